{{- define "canary-analyzer.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "canary-analyzer.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "canary-analyzer.labels" -}}
app.kubernetes.io/name: {{ include "canary-analyzer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "canary-analyzer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "canary-analyzer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "canary-analyzer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "canary-analyzer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "canary-analyzer.rulesConfigMap" -}}
{{- default (printf "%s-rules" (include "canary-analyzer.fullname" .)) .Values.existingRulesConfigMap -}}
{{- end -}}

{{- /* The Lease the replicas of this release elect a leader with: one per release, so two
releases in one namespace never share a leader. */}}
{{- define "canary-analyzer.leaseName" -}}
{{- default (include "canary-analyzer.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}
