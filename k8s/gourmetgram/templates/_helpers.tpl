{{/* Shared snippets of the app chart. */}}

{{/* Labels a Service selects the app's pods by. */}}
{{- define "gourmetgram.selectorLabels" -}}
app.kubernetes.io/name: gourmetgram-app
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "gourmetgram.labels" -}}
{{ include "gourmetgram.selectorLabels" . }}
app.kubernetes.io/part-of: gourmetgram
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
gourmetgram.io/environment: {{ .Values.environment }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The image reference; refuses an empty or "latest" tag. */}}
{{- define "gourmetgram.image" -}}
{{- $tag := required "image.tag is required (e.g. staging-1)" .Values.image.tag | toString -}}
{{- if eq $tag "latest" }}{{ fail "image.tag must name a build, not latest" }}{{ end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end }}
