// Command nightshift-kubecheck validates Kubernetes manifests (for example `helm template` output) offline.
//
// Every object is decoded strictly into its API type: the Kubernetes types of k8s.io/api (client-go's
// scheme) and KEDA's own keda.sh/v1alpha1 types (github.com/kedacore/keda/v2/apis/keda/v1alpha1). An
// unknown or duplicate field, a wrong type, an unknown kind or apiVersion is an error. ScaledObjects
// are then checked with KEDA's own validation (triggers, replica bounds, fallback), their Kafka
// triggers for the metadata KEDA's kafka scaler requires, and their scaleTargetRef must name a
// Deployment of the same input. Exit status 1 and one line per problem on any error.
//
// Usage: nightshift-kubecheck [FILE...]   (standard input without FILE)
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
)

func main() {
	scheme := runtime.NewScheme()
	must(clientscheme.AddToScheme(scheme))
	must(kedav1alpha1.AddToScheme(scheme))
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

	var inputs []io.Reader
	if len(os.Args) > 1 {
		for _, name := range os.Args[1:] {
			f, err := os.Open(name)
			must(err)
			defer f.Close()
			inputs = append(inputs, f)
		}
	} else {
		inputs = append(inputs, os.Stdin)
	}

	var problems []string
	deployments := map[string]bool{}
	var scaled []*kedav1alpha1.ScaledObject
	counts := map[string]int{}
	for _, in := range inputs {
		reader := utilyaml.NewYAMLReader(bufio.NewReader(in))
		for {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			must(err)
			if len(bytes.TrimSpace(doc)) == 0 || isOnlyComments(doc) {
				continue
			}
			json, err := utilyaml.ToJSON(doc)
			if err != nil {
				problems = append(problems, fmt.Sprintf("not YAML: %v", err))
				continue
			}
			if string(bytes.TrimSpace(json)) == "null" {
				continue
			}
			obj, gvk, err := decoder.Decode(json, nil, nil)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", describe(gvk), err))
				continue
			}
			counts[gvk.Kind]++
			switch o := obj.(type) {
			case *appsv1.Deployment:
				deployments[o.Name] = true
			case *kedav1alpha1.ScaledObject:
				scaled = append(scaled, o)
			}
		}
	}
	for _, so := range scaled {
		problems = append(problems, checkScaledObject(so, deployments)...)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, "error:", p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
	if len(counts) == 0 {
		fmt.Fprintln(os.Stderr, "error: no Kubernetes object in the input")
		os.Exit(1)
	}
	fmt.Printf("ok: %v\n", counts)
}

// checkScaledObject applies KEDA's own checks and the kafka scaler's required metadata.
func checkScaledObject(so *kedav1alpha1.ScaledObject, deployments map[string]bool) []string {
	var problems []string
	name := "ScaledObject " + so.Name
	if err := kedav1alpha1.ValidateTriggers(so.Spec.Triggers); err != nil {
		problems = append(problems, fmt.Sprintf("%s: %v", name, err))
	}
	if err := kedav1alpha1.CheckReplicaCountBoundsAreValid(so); err != nil {
		problems = append(problems, fmt.Sprintf("%s: %v", name, err))
	}
	if err := kedav1alpha1.CheckFallbackValid(so); err != nil {
		problems = append(problems, fmt.Sprintf("%s: %v", name, err))
	}
	ref := so.Spec.ScaleTargetRef
	if ref == nil || ref.Name == "" {
		problems = append(problems, name+": spec.scaleTargetRef.name is required")
	} else if (ref.Kind == "" || ref.Kind == "Deployment") && !deployments[ref.Name] {
		problems = append(problems, fmt.Sprintf("%s: scaleTargetRef names Deployment %q, which the input does not define",
			name, ref.Name))
	}
	for i, t := range so.Spec.Triggers {
		if t.Type != "kafka" {
			continue
		}
		where := fmt.Sprintf("%s: trigger %d (kafka)", name, i)
		for _, key := range []string{"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} {
			if t.Metadata[key] == "" {
				problems = append(problems, fmt.Sprintf("%s: metadata.%s is required", where, key))
			}
		}
		for _, key := range []string{"lagThreshold", "activationLagThreshold"} {
			if v, ok := t.Metadata[key]; ok {
				if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 0 || (key == "lagThreshold" && n == 0) {
					problems = append(problems, fmt.Sprintf("%s: metadata.%s must be a positive integer, not %q", where, key, v))
				}
			}
		}
		if v, ok := t.Metadata["offsetResetPolicy"]; ok && v != "earliest" && v != "latest" {
			problems = append(problems, fmt.Sprintf("%s: metadata.offsetResetPolicy must be earliest or latest, not %q", where, v))
		}
	}
	return problems
}

func describe(gvk *schema.GroupVersionKind) string {
	if gvk == nil || gvk.Kind == "" {
		return "object"
	}
	return gvk.String()
}

func isOnlyComments(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && !bytes.Equal(line, []byte("---")) {
			return false
		}
	}
	return true
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(2)
	}
}
