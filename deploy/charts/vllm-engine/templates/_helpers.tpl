{{/*
Names. The Deployment and the Service are named after the release ({model}-{env}), so the engine's
address is {release}.{namespace}.svc.cluster.local:{service.port}.
*/}}
{{- define "vllm-engine.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* A string made safe as a label value: [A-Za-z0-9_.-], at most 63 characters, alphanumeric ends. */}}
{{- define "vllm-engine.labelValue" -}}
{{- regexReplaceAll "[^A-Za-z0-9_.-]+" (toString .) "-" | trunc 63 | trimAll "-_." -}}
{{- end -}}

{{/* The name clients put in the OpenAI "model" field. */}}
{{- define "vllm-engine.servedName" -}}
{{- default .Values.model.id .Values.model.servedName -}}
{{- end -}}

{{- define "vllm-engine.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString (.Values.image.tag | default .Chart.AppVersion)) -}}
{{- end -}}

{{- define "vllm-engine.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every object and on the pods. */}}
{{- define "vllm-engine.commonLabels" -}}
{{ include "vllm-engine.selectorLabels" . }}
app.kubernetes.io/version: {{ include "vllm-engine.labelValue" (.Values.image.tag | default .Chart.AppVersion) | quote }}
app.kubernetes.io/component: inference-engine
inferops.dev/model: {{ include "vllm-engine.labelValue" (default (include "vllm-engine.servedName" .) .Values.labels.model) | quote }}
inferops.dev/environment: {{ include "vllm-engine.labelValue" .Values.labels.environment | quote }}
{{- end -}}

{{- define "vllm-engine.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{ include "vllm-engine.commonLabels" . }}
{{- end -}}

{{/* Startup probe failures allowed so that failureThreshold x period covers the readiness budget. */}}
{{- define "vllm-engine.startupFailureThreshold" -}}
{{- $budget := int .Values.readiness.budgetSeconds -}}
{{- $period := int .Values.readiness.startupPeriodSeconds -}}
{{- max 1 (div (add $budget (sub $period 1)) $period) -}}
{{- end -}}
