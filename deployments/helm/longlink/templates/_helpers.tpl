{{- define "longlink.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "longlink.labels" -}}
app.kubernetes.io/name: longlink
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "longlink.selector" -}}
app.kubernetes.io/name: longlink
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* probes on the debug listener: /healthz (alive), /readyz (serving) */}}
{{- define "longlink.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: debug}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: debug}
  periodSeconds: 10
readinessProbe:
  httpGet: {path: /readyz, port: debug}
  periodSeconds: 2
{{- end -}}

{{- define "longlink.podSpecCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: 90
{{- end -}}

{{- define "longlink.volumes" -}}
- name: config
  configMap: {name: {{ .name }}}
- name: secrets
  secret: {secretName: {{ .root.Values.secrets.name }}, defaultMode: 0400}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "longlink.mounts" -}}
- {name: config, mountPath: /etc/longlink/config, readOnly: true}
- {name: secrets, mountPath: /etc/longlink/secrets, readOnly: true}
- {name: tmp, mountPath: /tmp}
{{- end -}}
