{{/* Chart name, at most 63 characters. */}}
{{- define "hami-webui-server.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, unless it already contains the chart name. */}}
{{- define "hami-webui-server.fullname" -}}
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

{{- define "hami-webui-server.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hami-webui-server.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hami-webui-server.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hami-webui-server.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hami-webui-server.labels" -}}
helm.sh/chart: {{ include "hami-webui-server.chart" . }}
{{ include "hami-webui-server.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: backend
{{- end }}

{{/* The internal Service (port 8000): the fullname and "-backend", within 63 characters. */}}
{{- define "hami-webui-server.backendServiceName" -}}
{{- printf "%s-backend" (include "hami-webui-server.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* Whether the public listener (port 3000: the console, /api/vgpu/v1/*, /health_check) runs. */}}
{{- define "hami-webui-server.webEnabled" -}}
{{- if .Values.web.enabled }}true{{ end }}
{{- end }}

{{/* frontend.basePath in the server's canonical form ("/", "/gpu/", "/a/b/"), refused with a
     message when the server would refuse it: segments of letters, digits and . _ ~ - only,
     no dot segments, no empty segments, nothing shadowing /health_check. */}}
{{- define "hami-webui-server.basePath" -}}
{{- $raw := .Values.frontend.basePath | default "/" }}
{{- if not (kindIs "string" $raw) }}
{{- fail "frontend.basePath must be a string" }}
{{- end }}
{{- $inner := $raw | trimPrefix "/" | trimSuffix "/" }}
{{- if not $inner }}/{{ else }}
{{- range $segment := splitList "/" $inner }}
{{- if or (eq $segment ".") (eq $segment "..") (not (regexMatch "^[A-Za-z0-9._~-]+$" $segment)) }}
{{- fail (printf "frontend.basePath %q: segment %q is not a plain URL path segment (letters, digits and . _ ~ - only)" $raw $segment) }}
{{- end }}
{{- end }}
{{- if or (eq $inner "health_check") (hasPrefix "health_check/" $inner) }}
{{- fail (printf "frontend.basePath %q conflicts with /health_check" $raw) }}
{{- end }}
{{- printf "/%s/" $inner }}
{{- end }}
{{- end }}

{{/* Settings the chart derives from values may not be overridden through `env`, so the
     container, its ports, its probes and its Services always agree. */}}
{{- define "hami-webui-server.validateEnv" -}}
{{- $owned := dict "HAMI_WEBUI_BASE_PATH" "frontend.basePath" "HAMI_WEBUI_FRAME_ANCESTORS_JSON" "frontend.frameAncestors" "HAMI_WEBUI__WEB__ENABLED" "web.enabled" "HAMI_WEBUI_LISTEN_ADDRESS" "web.enabled (the public port is 3000)" "HAMI_WEBUI__WEB__LISTEN_ADDRESS" "web.enabled (the public port is 3000)" "POD_NAME" "leaderElection (the pod's name is its identity)" "POD_NAMESPACE" "leaderElection (the Lease is in the release namespace)" }}
{{- range $var := .Values.env | default list }}
{{- if hasKey $owned $var.name }}
{{- fail (printf "env must not set %s; use %s" $var.name (get $owned $var.name)) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "hami-webui-server.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hami-webui-server.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository@digest when a digest is set, else repository:tag (tag defaults to appVersion). */}}
{{- define "hami-webui-server.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where credentials from Secrets are mounted; config.yaml refers to these paths. */}}
{{- define "hami-webui-server.secretsDir" -}}/apps/secrets{{- end }}

{{/* Which credential modes are on, validated once; used by the ConfigMap and the Deployment. */}}
{{- define "hami-webui-server.authorizationEnabled" -}}
{{- $a := .Values.externalPrometheus.authorization }}
{{- if and $a.existingSecret $a.credentialsKey }}true{{ else if or $a.existingSecret $a.credentialsKey }}
{{- fail "externalPrometheus.authorization: set existingSecret and credentialsKey together" }}
{{- end }}
{{- end }}

{{- define "hami-webui-server.basicAuthEnabled" -}}
{{- $b := .Values.externalPrometheus.basicAuth }}
{{- if and $b.existingSecret $b.usernameKey $b.passwordKey }}true{{ else if or $b.existingSecret $b.usernameKey $b.passwordKey }}
{{- fail "externalPrometheus.basicAuth: set existingSecret, usernameKey and passwordKey together" }}
{{- end }}
{{- end }}

{{- define "hami-webui-server.tlsSecretEnabled" -}}
{{- $t := .Values.externalPrometheus.tls }}
{{- if and $t.certKey (not $t.keyKey) }}
{{- fail "externalPrometheus.tls: certKey and keyKey go together" }}
{{- end }}
{{- if and $t.keyKey (not $t.certKey) }}
{{- fail "externalPrometheus.tls: certKey and keyKey go together" }}
{{- end }}
{{- if and $t.existingSecret (or $t.caKey $t.certKey) }}true{{ else if or $t.existingSecret $t.caKey $t.certKey }}
{{- fail "externalPrometheus.tls: existingSecret needs caKey or certKey/keyKey, and they need existingSecret" }}
{{- end }}
{{- end }}

{{/* The server's config.yaml (the Go backend's format), as a YAML document. */}}
{{- define "hami-webui-server.config" -}}
{{- $p := .Values.externalPrometheus }}
{{- $b := .Values.backend }}
{{- $dir := include "hami-webui-server.secretsDir" . }}
{{- /* Without externalPrometheus the server's own default (http://localhost:9090) applies:
     this chart bundles no Prometheus and guesses no other release's Service. */}}
{{- $address := "http://localhost:9090" }}
{{- if $p.enabled }}
{{- $address = required "externalPrometheus.address is required when externalPrometheus.enabled is true" $p.address }}
{{- end }}
{{- $server := dict "http" (dict "addr" "0.0.0.0:8000" "timeout" $b.http.timeout "client_request_timeout" $b.http.clientRequestTimeout "body_timeout" $b.http.bodyTimeout "keep_alive" $b.http.keepAlive "max_connections" (int64 $b.http.maxConnections)) "shutdown_timeout" $b.shutdownTimeout }}
{{- if $b.timezone }}
{{- $_ := set $server "timezone" $b.timezone }}
{{- end }}
{{- if $b.http.workers }}
{{- $_ := set (index $server "http") "workers" (int64 $b.http.workers) }}
{{- end }}
{{- if not (kindIs "invalid" $b.http.scrapeSendBuffer) }}
{{- $_ := set (index $server "http") "scrape_send_buffer" (int64 $b.http.scrapeSendBuffer) }}
{{- end }}
{{- $prom := dict "address" $address "timeout" $p.timeout "max_concurrency" (int64 $p.maxConcurrency) "max_queue" (int64 $p.maxQueue) "max_response_bytes" (int64 $p.maxResponseBytes) "path_prefix" $p.pathPrefix }}
{{- $authz := include "hami-webui-server.authorizationEnabled" . }}
{{- $basic := include "hami-webui-server.basicAuthEnabled" . }}
{{- if and $authz $basic }}
{{- fail "externalPrometheus: authorization and basicAuth are mutually exclusive" }}
{{- end }}
{{- if $authz }}
{{- $_ := set $prom "authorization" (dict "type" (default "Bearer" $p.authorization.type) "credentials_file" (printf "%s/authorization/credentials" $dir)) }}
{{- end }}
{{- if $basic }}
{{- $_ := set $prom "basic_auth" (dict "username_file" (printf "%s/basic-auth/username" $dir) "password_file" (printf "%s/basic-auth/password" $dir)) }}
{{- end }}
{{- $tls := dict "insecure_skip_verify" $p.tls.insecureSkipVerify }}
{{- if $p.tls.serverName }}
{{- $_ := set $tls "server_name" $p.tls.serverName }}
{{- end }}
{{- if include "hami-webui-server.tlsSecretEnabled" . }}
{{- if $p.tls.caKey }}
{{- $_ := set $tls "ca_file" (printf "%s/tls/ca.crt" $dir) }}
{{- end }}
{{- if $p.tls.certKey }}
{{- $_ := set $tls "cert_file" (printf "%s/tls/tls.crt" $dir) }}
{{- $_ := set $tls "key_file" (printf "%s/tls/tls.key" $dir) }}
{{- end }}
{{- end }}
{{- $_ := set $prom "tls" $tls }}
{{- $exporter := dict "interval" .Values.metricsExporter.interval "timeout" .Values.metricsExporter.timeout "stale_cycles" (int64 .Values.metricsExporter.staleCycles) "window_refresh" .Values.metricsExporter.windowRefresh }}
{{- $dc := .Values.hami.deviceConfig }}
{{- $config := dict "server" $server "prometheus" $prom "exporter" $exporter "node_selectors" (.Values.vendorNodeSelectors | default dict) "scheduling" (dict "resource_names" (.Values.scheduling.resourceNames | default list)) "device_config" (dict "enabled" $dc.enabled "namespace" $dc.namespace "name" $dc.name "key" $dc.key) "ascend" (dict "annotationless_pod_mode" .Values.ascend.annotationlessPodMode) "kubernetes" (dict "unready_after" $b.kubernetes.unreadyAfter) "monitor" (dict "allowed_metric_prefixes" (.Values.monitor.allowedMetricPrefixes | default list) "max_query_length" (int64 .Values.monitor.maxQueryLength)) "leader_election" (include "hami-webui-server.leaderElection" . | fromYaml) }}
{{- toYaml $config }}
{{- end }}

{{/* The config file's leader_election: the Lease in the release namespace, named after the
     release unless leaderElection.leaseName says otherwise. */}}
{{- define "hami-webui-server.leaderElection" -}}
{{- $le := .Values.leaderElection }}
{{- toYaml (dict "enabled" $le.enabled "lease_name" ($le.leaseName | default (include "hami-webui-server.fullname" .)) "namespace" (include "hami-webui-server.namespace" .) "lease_duration" $le.leaseDuration "renew_deadline" $le.renewDeadline "retry_period" $le.retryPeriod) }}
{{- end }}

{{/* A Go duration ("30s", "1m30s", "500ms") in seconds, for PromQL arithmetic. */}}
{{- define "hami-webui-server.durationSeconds" -}}
{{- $units := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 }}
{{- $total := 0.0 }}
{{- range $part := regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" (toString .) -1 }}
{{- $unit := regexReplaceAll "^[0-9.]+" $part "" }}
{{- $number := regexReplaceAll "[a-zµ]+$" $part "" | float64 }}
{{- $total = addf $total (mulf $number (get $units $unit)) }}
{{- end }}
{{- $total }}
{{- end }}
