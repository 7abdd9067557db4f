{{- define "tapwire.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tapwire.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tapwire.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tapwire.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tapwire.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tapwire.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tapwire.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tapwire.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the API token: the user's, or the one the chart generates. */}}
{{- define "tapwire.tokenSecretName" -}}
{{- default (printf "%s-token" (include "tapwire.fullname" .)) .Values.agent.tokenSecret -}}
{{- end -}}

{{/* The Secret holding the sinks' credentials: the user's, or the one the chart renders. */}}
{{- define "tapwire.sinksSecretName" -}}
{{- default (printf "%s-sinks" (include "tapwire.fullname" .)) .Values.sinks.existingSecret -}}
{{- end -}}

{{/* `k=v,k2=v2` with percent-encoded values (OTEL_EXPORTER_OTLP_HEADERS' format). */}}
{{- define "tapwire.pairs" -}}
{{- $out := list -}}
{{- range $k, $v := . -}}
{{- $out = append $out (printf "%s=%s" $k (urlquery (toString $v) | replace "+" "%20")) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}
