{{/* Labels shared by every object of the release. */}}
{{- define "switchyard.labels" -}}
app.kubernetes.io/name: switchyard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component (operator or proxy). The operator finds proxy pods by
     `app.kubernetes.io/name=switchyard,app.kubernetes.io/component=proxy`. */}}
{{- define "switchyard.selector" -}}
app.kubernetes.io/name: switchyard
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "switchyard.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion) -}}
{{- end }}

{{/* Cluster-scoped names carry the namespace: one release per namespace may coexist. */}}
{{- define "switchyard.clusterName" -}}
{{- printf "switchyard-operator-%s" .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- define "switchyard.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "switchyard.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* The Service Claude Code talks to (ANTHROPIC_BASE_URL); NOTES.txt prints it. */}}
{{- define "switchyard.proxyService" -}}
switchyard-proxy
{{- end }}

{{/* The proxies' drain deadline on SIGTERM, in whole seconds: the routing snapshot's
     `server.shutdownGraceMs` + `server.drainTimeoutMs`. The operator publishes the defaults
     of `ServerSettings` (crds/src/snapshot.rs; charts/test_chart.py checks these numbers
     against it), and no value of this chart changes them. */}}
{{- define "switchyard.proxyDrainSeconds" -}}
{{- $shutdownGraceMs := 2000 -}}
{{- $drainTimeoutMs := 600000 -}}
{{- div (add $shutdownGraceMs $drainTimeoutMs 999) 1000 -}}
{{- end }}

{{/* The proxy pods' terminationGracePeriodSeconds: the drain deadline plus the margin, or
     proxy.terminationGracePeriodSeconds when that is longer. */}}
{{- define "switchyard.proxyTerminationGrace" -}}
{{- $derived := add (include "switchyard.proxyDrainSeconds" . | int) .Values.proxy.terminationGraceMarginSeconds -}}
{{- max (int .Values.proxy.terminationGracePeriodSeconds) $derived -}}
{{- end }}

{{/* The Secret whose `admin-key` guards the proxies' admin API; empty when it is open. */}}
{{- define "switchyard.adminKeySecret" -}}
{{- if not .Values.proxy.requestView.openAdminApi -}}
{{- .Values.proxy.requestView.adminKeySecret | default "switchyard-admin-key" -}}
{{- end -}}
{{- end }}
