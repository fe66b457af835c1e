{{/*
Shared snippets of the platform chart. Resource names are fixed (mlflow, minio, postgres)
rather than derived from the release name: the rest of the lab refers to them by these names.
*/}}

{{/* Labels on every object; call with (dict "ctx" $ "component" "mlflow"). */}}
{{- define "platform.labels" -}}
{{ include "platform.selectorLabels" . }}
app.kubernetes.io/part-of: gourmetgram
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
{{- end }}

{{/* The labels a Service or a controller selects its pods by. */}}
{{- define "platform.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end }}

{{/* Pod-level security settings: a fixed non-root user and the default seccomp profile. */}}
{{- define "platform.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security settings: no privilege escalation, no capabilities, read-only image. */}}
{{- define "platform.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/*
How a user-facing Service is reached: on externalIP on Chameleon, or as a NodePort in
kind. Call with (dict "ctx" $ "nodePort" N) and put it at the top of the Service spec; the
port entry adds the nodePort itself.
*/}}
{{- define "platform.exposure" -}}
{{- if eq .ctx.Values.serviceType "NodePort" }}
type: NodePort
{{- else if eq .ctx.Values.serviceType "ClusterIP" }}
type: ClusterIP
{{- with .ctx.Values.externalIP }}
externalIPs:
  - {{ . | quote }}
{{- end }}
{{- else }}
{{- fail (printf "serviceType must be ClusterIP or NodePort, not %q" .ctx.Values.serviceType) }}
{{- end }}
{{- end }}

{{/* The nodePort line of a Service port, only for NodePort Services; a missing value fails. */}}
{{- define "platform.nodePort" -}}
{{- if eq .ctx.Values.serviceType "NodePort" }}
nodePort: {{ required (printf "%s is required when serviceType is NodePort" .name) .value }}
{{- end }}
{{- end }}

{{/*
Origins whose browsers may change things through MLflow's API (the UI's own POSTs send an
Origin header, and MLflow exempts only localhost): the addresses students browse to.
*/}}
{{- define "platform.mlflowCorsOrigins" -}}
{{- $origins := list -}}
{{- range concat (compact (list .Values.externalIP .Values.floatingIP)) .Values.mlflow.extraAllowedHosts | uniq }}{{ $origins = append $origins (printf "http://%s:*" .) }}{{ end -}}
{{- join "," $origins -}}
{{- end }}

{{/*
The Host headers MLflow accepts (MLflow 3 rejects others with 403 "Invalid Host header").
A browser or client sends "name:port", so each name is allowed bare and with any port.
*/}}
{{- define "platform.mlflowAllowedHosts" -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list "mlflow" (printf "mlflow.%s" $ns) (printf "mlflow.%s.svc" $ns) (printf "mlflow.%s.svc.cluster.local" $ns) "localhost" "127.0.0.1" -}}
{{- $names = concat $names (compact (list .Values.externalIP .Values.floatingIP)) .Values.mlflow.extraAllowedHosts -}}
{{- $hosts := list -}}
{{- range $names | uniq }}{{ $hosts = append (append $hosts .) (printf "%s:*" .) }}{{ end -}}
{{- join "," $hosts -}}
{{- end }}

{{/*
The basic_auth.ini of MLflow's basic-auth app: its user store is the tracking store's
Postgres database (user and host in the URI; the password comes from PGPASSWORD).
*/}}
{{- define "platform.mlflowAuthConfig" -}}
[mlflow]
default_permission = {{ .Values.mlflow.defaultPermission }}
database_uri = postgresql+psycopg2://{{ .Values.postgres.user }}@postgres.{{ .Release.Namespace }}.svc.cluster.local:5432/{{ .Values.postgres.database }}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
{{- end }}
