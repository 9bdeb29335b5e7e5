{{/*
Names and labels. Every object of a component is named <release>-<component>
(order-platform-gateway for a release called order-platform).
*/}}

{{- define "order-platform.componentName" -}}
{{- printf "%s-%s" .root.Release.Name .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "order-platform.selectorLabels" -}}
app.kubernetes.io/name: order-platform
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "order-platform.labels" -}}
{{ include "order-platform.selectorLabels" . }}
app.kubernetes.io/version: {{ include "order-platform.imageTag" .root | quote }}
app.kubernetes.io/part-of: order-platform
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "order-platform.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{/* The name of the release-wide objects: the release's name, with the chart's if it lacks it. */}}
{{- define "order-platform.fullname" -}}
{{- if contains "order-platform" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-order-platform" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "order-platform.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "order-platform.fullname" .) -}}
{{- end -}}

{{/*
The non-secret settings of one component, as ORDER_PLATFORM_* variables: only those its
subcommand reads (dev/deploy_check holds every name to `order-platform <subcommand> --help`),
then the component's `env` on top. Called with (dict "root" $ "name" <component>).
*/}}
{{- define "order-platform.config" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $s := $root.Values.settings -}}
{{- $c := index $root.Values.components $name -}}
{{- /* The defaults of --listen are loopback addresses; the pod must listen on every interface. */ -}}
{{- $cfg := dict "ORDER_PLATFORM_LISTEN" (printf "0.0.0.0:%v" $root.Values.port) -}}
{{- if has $name (list "command-service" "query-service" "gateway") -}}
{{- $_ := set $cfg "ORDER_PLATFORM_OIDC_ISSUER" (required "settings.oidc.issuer is required: the URL of the OIDC issuer whose tokens the API accepts" $s.oidc.issuer) -}}
{{- $_ := set $cfg "ORDER_PLATFORM_OIDC_AUDIENCE" (required "settings.oidc.audience is required" $s.oidc.audience) -}}
{{- if $s.oidc.clientId -}}
{{- $_ := set $cfg "ORDER_PLATFORM_OIDC_CLIENT_ID" $s.oidc.clientId -}}
{{- end -}}
{{- end -}}
{{- if has $name (list "relay" "query-service") -}}
{{- $_ := set $cfg "ORDER_PLATFORM_KAFKA_BOOTSTRAP_SERVERS" (required "settings.kafkaBootstrapServers is required" $s.kafkaBootstrapServers) -}}
{{- $_ := set $cfg "ORDER_PLATFORM_SCHEMA_REGISTRY_URL" (required "settings.schemaRegistryUrl is required" $s.schemaRegistryUrl) -}}
{{- $_ := set $cfg "ORDER_PLATFORM_TOPIC" $s.topic -}}
{{- end -}}
{{- if eq $name "query-service" -}}
{{- $_ := set $cfg "ORDER_PLATFORM_ELASTICSEARCH_URL" (required "settings.elasticsearchUrl is required" $s.elasticsearchUrl) -}}
{{- if $s.esIndexPrefix -}}
{{- $_ := set $cfg "ORDER_PLATFORM_ES_INDEX_PREFIX" $s.esIndexPrefix -}}
{{- end -}}
{{- $_ := set $cfg "ORDER_PLATFORM_GROUP_ID" $s.groupId -}}
{{- end -}}
{{- if and $s.tracing $s.tracing.otlpEndpoint -}}
{{- $_ := set $cfg "ORDER_PLATFORM_OTLP_ENDPOINT" $s.tracing.otlpEndpoint -}}
{{- $_ := set $cfg "ORDER_PLATFORM_TRACE_SAMPLE_RATIO" (toString ($s.tracing.sampleRatio | default "1.0")) -}}
{{- end -}}
{{- if eq $name "gateway" -}}
{{- $_ := set $cfg "ORDER_PLATFORM_COMMAND_URL" (printf "http://%s:%v" (include "order-platform.componentName" (dict "root" $root "name" "command-service")) $root.Values.port) -}}
{{- $_ := set $cfg "ORDER_PLATFORM_QUERY_URL" (printf "http://%s:%v" (include "order-platform.componentName" (dict "root" $root "name" "query-service")) $root.Values.port) -}}
{{- end -}}
{{- $cfg = mergeOverwrite $cfg ($c.env | default dict) -}}
{{- range $key, $value := $cfg }}
{{ $key }}: {{ $value | toString | quote }}
{{- end -}}
{{- end -}}

{{/*
The secret settings of one component: (variable, key in the Secret) pairs.
*/}}
{{- define "order-platform.secretEnv" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- if has $name (list "command-service" "relay" "query-service") }}
- name: ORDER_PLATFORM_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "order-platform.secretName" $root }}
      key: database-url
{{- end }}
{{- if has $name (list "relay" "query-service") }}
# TLS and SASL to the brokers, when the Secret has them (security.protocol=sasl_ssl;…).
- name: ORDER_PLATFORM_KAFKA_OPTIONS
  valueFrom:
    secretKeyRef:
      name: {{ include "order-platform.secretName" $root }}
      key: kafka-options
      optional: true
{{- end }}
{{- if and (eq $name "gateway") $root.Values.settings.sharedRateLimits }}
- name: ORDER_PLATFORM_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "order-platform.secretName" $root }}
      key: redis-url
{{- end }}
{{- end -}}
