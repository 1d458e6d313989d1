#!/usr/bin/env bash
# Install what the local stack needs and is missing: a JDK (17+ for Kafka and S3Proxy, 21+ for
# Apicurio Registry), Maven, PostgreSQL.
# Idempotent: does nothing when every tool is present. Used by `make demo` and `make test`.
# With --browser (`make browser`, part of `make test`): only Chromium from Debian's packages, the headless
# browser the load-test report test drives through Playwright (no browser download of Playwright's own).
set -euo pipefail

java_feature() {  # feature version of a java binary: 17, 21, 25 (1 for Java 8 and older)
  "$1" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -1
}

has_jdk() {  # has_jdk N: JAVA_HOME, PATH or /usr/lib/jvm holds a JDK >= N (as nightshift looks for it)
  local j v
  for j in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
    [ -n "$j" ] && [ -x "$j" ] || continue
    v=$(java_feature "$j")
    [ "${v:-0}" -ge "$1" ] && return 0
  done
  return 1
}

apt_candidate() {  # the first of the given packages the apt sources offer
  local p
  for p in "$@"; do
    if apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then echo "$p"; return 0; fi
  done
  return 1
}

need=()
if [ "${1:-}" = "--browser" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
else
  command -v java >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
  if ! has_jdk 21; then
    if jdk=$(apt_candidate openjdk-21-jdk-headless openjdk-25-jdk-headless temurin-25-jdk temurin-21-jdk); then
      need+=("$jdk")
    else
      echo "bootstrap: warning: no JDK 21+ found and none offered by apt; Apicurio Registry (the schema registry" \
           "of the local stack) needs one. Install Temurin 21+ (https://adoptium.net/installation/linux/)" \
           "or point JAVA_HOME at a JDK 21+." >&2
    fi
  fi
  command -v mvn >/dev/null 2>&1 || need+=(maven)
  if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    need+=(postgresql)
  fi
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "bootstrap: installing ${need[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "bootstrap: need root to install ${need[*]}; run: apt-get install -y ${need[*]}" >&2; exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
