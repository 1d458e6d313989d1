{{- define "nightshift.labels" -}}
app.kubernetes.io/part-of: nightshift
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "nightshift.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* Prometheus scrape annotations of every pod (the services serve /metrics on the HTTP port). */}}
{{- define "nightshift.scrape" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.httpPort | quote }}
prometheus.io/path: /metrics
{{- end -}}

{{- define "nightshift.secretEnv" -}}
{{- $root := . -}}
{{- range $env, $key := dict "NIGHTSHIFT_KAFKA_SASL_USERNAME" .Values.secret.keys.kafkaUsername "NIGHTSHIFT_KAFKA_SASL_PASSWORD" .Values.secret.keys.kafkaPassword "NIGHTSHIFT_APDB_DSN" .Values.secret.keys.apdbDsn "PGPASSWORD" .Values.secret.keys.pgPassword "AWS_ACCESS_KEY_ID" .Values.secret.keys.s3AccessKey "AWS_SECRET_ACCESS_KEY" .Values.secret.keys.s3SecretKey }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secret.name }}
      key: {{ $key }}
{{- end }}
{{- end -}}

{{/* Environment every service shares: settings from values, credentials from the Secret. */}}
{{- define "nightshift.env" -}}
- name: NIGHTSHIFT_HTTP_HOST
  value: "0.0.0.0"
- name: NIGHTSHIFT_HTTP_PORT
  value: {{ .Values.httpPort | quote }}
- name: NIGHTSHIFT_LOG_FORMAT
  value: json
- name: NIGHTSHIFT_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: NIGHTSHIFT_KAFKA_BOOTSTRAP_SERVERS
  value: {{ .Values.kafka.bootstrap | quote }}
- name: NIGHTSHIFT_KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
- name: NIGHTSHIFT_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.saslMechanism | quote }}
- name: NIGHTSHIFT_TOPIC_PREFIX
  value: {{ .Values.kafka.topicPrefix | quote }}
- name: NIGHTSHIFT_SCHEMA_REGISTRY_URL
  value: {{ .Values.schemaRegistryUrl | quote }}
{{- if .Values.s3EndpointUrl }}
- name: NIGHTSHIFT_S3_ENDPOINT_URL
  value: {{ .Values.s3EndpointUrl | quote }}
{{- end }}
- name: NIGHTSHIFT_BUTLER_REPO
  value: {{ .Values.butlerRepo | quote }}
- name: NIGHTSHIFT_STAGING_URI
  value: {{ .Values.stagingUri | quote }}
{{ include "nightshift.secretEnv" . }}
{{- end -}}

{{- define "nightshift.probes" -}}
ports:
  - name: http
    containerPort: {{ .Values.httpPort }}
    protocol: TCP
{{- if .apiPort }}
  - name: api
    containerPort: {{ .apiPort }}
    protocol: TCP
{{- end }}
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}
