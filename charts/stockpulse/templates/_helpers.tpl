{{- define "stockpulse.name" -}}stockpulse-operator{{- end -}}

{{- define "stockpulse.fullname" -}}
{{- if eq .Release.Name "stockpulse" -}}stockpulse-operator{{- else -}}{{ printf "%s-stockpulse-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "stockpulse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stockpulse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "stockpulse.labels" -}}
{{ include "stockpulse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: stockpulse
{{- if not .Values.plainManifests }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}
{{- end -}}

{{- define "stockpulse.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
