{{/* The chart's name, truncated to the 63 characters of a DNS label. */}}
{{- define "trtc-recording-monitor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: release name and chart name, once if one contains the other. */}}
{{- define "trtc-recording-monitor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "trtc-recording-monitor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trtc-recording-monitor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trtc-recording-monitor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "trtc-recording-monitor.labels" -}}
helm.sh/chart: {{ include "trtc-recording-monitor.chart" . }}
{{ include "trtc-recording-monitor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: trtc-recording-monitor
{{- end }}

{{- define "trtc-recording-monitor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "trtc-recording-monitor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "trtc-recording-monitor.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret whose keys become environment variables, or nothing. */}}
{{- define "trtc-recording-monitor.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if .Values.secrets }}
{{- include "trtc-recording-monitor.fullname" . }}
{{- end }}
{{- end }}

{{/* The Secret holding web-config.yml (and callbacks-web-config.yml), or nothing. */}}
{{- define "trtc-recording-monitor.webSecretName" -}}
{{- if and .Values.webConfig.enabled .Values.webConfig.existingSecret }}
{{- .Values.webConfig.existingSecret }}
{{- else if or .Values.webConfig.enabled .Values.callbacks.listener.webConfig }}
{{- printf "%s-web" (include "trtc-recording-monitor.fullname" .) }}
{{- end }}
{{- end }}

{{/* Whether the main listener speaks TLS (for the probes' and the ServiceMonitor's scheme). */}}
{{- define "trtc-recording-monitor.tls" -}}
{{- if and .Values.webConfig.enabled (or .Values.webConfig.tlsSecret (dig "tls_server_config" "" .Values.webConfig.config)) }}true{{- end }}
{{- end }}

{{/* Whether basic auth guards the main listener. */}}
{{- define "trtc-recording-monitor.basicAuth" -}}
{{- if and .Values.webConfig.enabled (or .Values.webConfig.existingSecret (dig "basic_auth_users" "" .Values.webConfig.config)) }}true{{- end }}
{{- end }}

{{/* The storage backend the config names (sqlite when unset). */}}
{{- define "trtc-recording-monitor.backend" -}}
{{- dig "storage" "backend" "sqlite" .Values.config }}
{{- end }}

{{/* monitor.yaml: the values' config with the listen addresses and web config paths set. */}}
{{- define "trtc-recording-monitor.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $server := default dict (get $config "server") }}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int .Values.service.port)) }}
{{- if .Values.webConfig.enabled }}
{{- $_ := set $server "web_config_file" "/etc/trtc-monitor-web/web-config.yml" }}
{{- end }}
{{- $_ := set $config "server" $server }}
{{- if .Values.callbacks.listener.enabled }}
{{- $callbacks := default dict (get $config "callbacks") }}
{{- $_ := set $callbacks "listen" (printf "0.0.0.0:%d" (int .Values.callbacks.listener.port)) }}
{{- if .Values.callbacks.listener.webConfig }}
{{- $_ := set $callbacks "web_config_file" "/etc/trtc-monitor-web/callbacks-web-config.yml" }}
{{- end }}
{{- $_ := set $config "callbacks" $callbacks }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* Checks that fail the render with a message instead of producing a broken release. */}}
{{- define "trtc-recording-monitor.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (ne (include "trtc-recording-monitor.backend" .) "redis") }}
{{- fail (printf "replicas: %d needs config.storage.backend: redis (SQLite is one file on one volume: one replica only)" (int .Values.replicas)) }}
{{- end }}
{{- if and .Values.callbacks.ingress.enabled (not .Values.callbacks.listener.enabled) }}
{{- fail "callbacks.ingress.enabled needs callbacks.listener.enabled: the ingress exposes only the callback listener" }}
{{- end }}
{{- if and .Values.callbacks.listener.enabled (eq (int .Values.callbacks.listener.port) (int .Values.service.port)) }}
{{- fail "callbacks.listener.port must differ from service.port" }}
{{- end }}
{{- if and .Values.webConfig.enabled (not .Values.webConfig.existingSecret) (not .Values.webConfig.config) }}
{{- fail "webConfig.enabled needs webConfig.config or webConfig.existingSecret" }}
{{- end }}
{{- end }}

{{/* An HTTP probe, or what replaces it when basic auth guards every path. */}}
{{- define "trtc-recording-monitor.probe" -}}
{{- $root := .root }}
{{- $path := .path }}
{{- $tls := include "trtc-recording-monitor.tls" $root }}
{{- if and (include "trtc-recording-monitor.basicAuth" $root) $root.Values.probes.basicAuthSecret }}
exec:
  command:
    - python3
    - -c
    - |
      import base64, os, ssl, urllib.request
      auth = base64.b64encode(f"{os.environ['PROBE_USERNAME']}:{os.environ['PROBE_PASSWORD']}".encode()).decode()
      request = urllib.request.Request("{{ ternary "https" "http" (eq $tls "true") }}://127.0.0.1:{{ $root.Values.service.port }}{{ $path }}", headers={"Authorization": "Basic " + auth})
      urllib.request.urlopen(request, timeout=4, context=ssl._create_unverified_context())
{{- else if include "trtc-recording-monitor.basicAuth" $root }}
tcpSocket:
  port: http
{{- else }}
httpGet:
  path: {{ $path }}
  port: http
  scheme: {{ ternary "HTTPS" "HTTP" (eq $tls "true") }}
{{- end }}
{{- end }}
