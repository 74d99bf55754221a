{{- define "stratmaster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stratmaster.fullname" -}}
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

{{- define "stratmaster.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "stratmaster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "stratmaster.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "stratmaster.secretName" -}}
{{- .Values.secret.existingSecret | default (printf "%s-secret" (include "stratmaster.fullname" .)) -}}
{{- end -}}

{{/* env for every pod: settings from the ConfigMap and the Secret; a change to either rolls the pods */}}
{{- define "stratmaster.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "stratmaster.fullname" . }}-config
  - secretRef:
      name: {{ include "stratmaster.secretName" . }}
{{- end -}}

{{- define "stratmaster.podAnnotations" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}

{{/* Temporal mTLS (temporalTls.existingSecret: tls.crt, tls.key, ca.crt) for every pod */}}
{{- define "stratmaster.temporalTlsEnv" -}}
{{- if .Values.temporalTls.existingSecret }}
env:
  - {name: STRATMASTER_TEMPORAL_TLS, value: "true"}
  - {name: STRATMASTER_TEMPORAL_TLS_CERT, value: /etc/stratmaster/temporal-tls/tls.crt}
  - {name: STRATMASTER_TEMPORAL_TLS_KEY, value: /etc/stratmaster/temporal-tls/tls.key}
  - {name: STRATMASTER_TEMPORAL_TLS_CA, value: /etc/stratmaster/temporal-tls/ca.crt}
{{- end }}
{{- end -}}

{{- define "stratmaster.temporalTlsMount" -}}
{{- if .Values.temporalTls.existingSecret }}
- {name: temporal-tls, mountPath: /etc/stratmaster/temporal-tls, readOnly: true}
{{- end }}
{{- end -}}

{{- define "stratmaster.temporalTlsVolume" -}}
{{- if .Values.temporalTls.existingSecret }}
- name: temporal-tls
  secret: {secretName: {{ .Values.temporalTls.existingSecret }}, defaultMode: 0400}
{{- end }}
{{- end -}}
