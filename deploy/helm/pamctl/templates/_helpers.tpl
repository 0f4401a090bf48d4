{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "pamctl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. */}}
{{- define "pamctl.fullname" -}}
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

{{- define "pamctl.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pamctl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pamctl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pamctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end }}

{{- define "pamctl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pamctl.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where the data volume is mounted; pamctl's data dir is <this>/data. */}}
{{- define "pamctl.dataMount" -}}/var/lib/pamctl{{- end }}

{{/* The in-cluster DNS names of a Service. */}}
{{- define "pamctl.inClusterNames" -}}
{{- $svc := index . 0 }}{{- $ns := index . 1 }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/* The proxies' names. */}}
{{- define "pamctl.proxiesName" -}}
{{- printf "%s-proxy" (include "pamctl.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pamctl.proxiesSelectorLabels" -}}
app.kubernetes.io/name: {{ include "pamctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end }}

{{- define "pamctl.proxiesLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pamctl.proxiesSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pamctl.proxiesServiceAccountName" -}}
{{- if .Values.proxies.serviceAccount.create }}
{{- default (include "pamctl.proxiesName" .) .Values.proxies.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.proxies.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The broker's in-cluster URL, which the proxies enroll with. */}}
{{- define "pamctl.brokerURL" -}}
{{- printf "%s://%s.%s.svc:%d" (ternary "https" "http" .Values.tls.enabled) (include "pamctl.fullname" .) .Release.Namespace (int .Values.broker.port) }}
{{- end }}

{{/* The metrics listener's config, the same for every workload. */}}
{{- define "pamctl.metricsConfig" -}}
{{- /* Prometheus scrapes over the pod network in plaintext (the ServiceMonitor's default scheme) unless tls is on. */}}
{{- $m := dict "addr" (printf "0.0.0.0:%d" (int .Values.metrics.port)) }}
{{- if .Values.tls.enabled }}
{{- $_ := set $m "tls" (dict "cert_file" "/etc/pamctl/tls/tls.crt" "key_file" "/etc/pamctl/tls/tls.key") }}
{{- else }}
{{- $_ := set $m "insecure_plaintext" true }}
{{- end }}
{{- toJson $m }}
{{- end }}

{{/*
The config file: the user's keys with the chart's on top. The chart owns
where pamctl listens, keeps its data and finds its store.
*/}}
{{- define "pamctl.config" -}}
{{- $cfg := deepCopy (default (dict) .Values.config) }}
{{- $inCluster := include "pamctl.inClusterNames" (list (include "pamctl.fullname" .) .Release.Namespace) | fromJsonArray }}
{{- $_ := set $cfg "role" .Values.role }}
{{- $broker := default (dict) (get $cfg "broker") }}
{{- $_ := set $broker "addr" (printf "0.0.0.0:%d" (int .Values.broker.port)) }}
{{- $_ := set $broker "hostnames" (concat $inCluster .Values.broker.hostnames | uniq) }}
{{- $proxy := default (dict) (get $cfg "proxy") }}
{{- if eq .Values.role "all" }}
{{- $_ := set $proxy "addr" (printf "0.0.0.0:%d" (int .Values.proxy.port)) }}
{{- $_ := set $proxy "hostnames" (concat $inCluster .Values.proxy.hostnames | uniq) }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- $btls := dict "cert_file" "/etc/pamctl/tls/tls.crt" "key_file" "/etc/pamctl/tls/tls.key" }}
{{- if .Values.tls.clientCASecretName }}{{ $_ := set $btls "client_ca_file" "/etc/pamctl/client-ca/ca.crt" }}{{ end }}
{{- $_ := set $broker "tls" $btls }}
{{- if eq .Values.role "all" }}
{{- $_ := set $proxy "tls" (dict "cert_file" "/etc/pamctl/tls/tls.crt" "key_file" "/etc/pamctl/tls/tls.key") }}
{{- end }}
{{- else }}
{{- /* Plaintext on the pod network: TLS ends in front (ingress, mesh). */}}
{{- $_ := set $broker "insecure_plaintext" true }}
{{- if eq .Values.role "all" }}
{{- $_ := set $proxy "insecure_plaintext" true }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "broker" $broker }}
{{- if $proxy }}
{{- $_ := set $cfg "proxy" $proxy }}
{{- end }}
{{- if .Values.metrics.enabled }}
{{- $_ := set $cfg "metrics" (include "pamctl.metricsConfig" . | fromJson) }}
{{- end }}
{{- if eq .Values.store.backend "etcd" }}
{{- $etcd := dict "endpoints" .Values.store.etcd.endpoints "prefix" .Values.store.etcd.prefix }}
{{- if .Values.store.etcd.tlsSecretName }}
{{- $_ := set $etcd "tls" (dict "ca_file" "/etc/pamctl/etcd/ca.crt" "cert_file" "/etc/pamctl/etcd/tls.crt" "key_file" "/etc/pamctl/etcd/tls.key") }}
{{- end }}
{{- if .Values.store.etcd.username }}
{{- $_ := set $etcd "username" .Values.store.etcd.username }}
{{- $_ := set $etcd "password_file" "/etc/pamctl/etcd-password/password" }}
{{- end }}
{{- $_ := set $cfg "store" (dict "backend" "etcd" "etcd" $etcd) }}
{{- end }}
{{- $_ := set $cfg "data_dir" (printf "%s/data" (include "pamctl.dataMount" .)) }}
{{- toYaml $cfg }}
{{- end }}

{{/*
The proxies' config: role proxy, the broker to trust, the projected token
to enroll with. Rules, masking and upstreams come from the broker.
*/}}
{{- define "pamctl.proxiesConfig" -}}
{{- $inCluster := include "pamctl.inClusterNames" (list (include "pamctl.proxiesName" .) .Release.Namespace) | fromJsonArray }}
{{- $proxy := dict "addr" (printf "0.0.0.0:%d" (int .Values.proxies.port)) "hostnames" (concat $inCluster .Values.proxies.hostnames | uniq) "identity" (dict "id_token_file" "/var/run/secrets/tokens/pamctl") }}
{{- if .Values.tls.enabled }}
{{- $_ := set $proxy "tls" (dict "cert_file" "/etc/pamctl/tls/tls.crt" "key_file" "/etc/pamctl/tls/tls.key") }}
{{- else }}
{{- $_ := set $proxy "insecure_plaintext" true }}
{{- end }}
{{- $cfg := dict "role" "proxy" "server" (include "pamctl.brokerURL" .) "proxy" $proxy "data_dir" (printf "%s/data" (include "pamctl.dataMount" .)) }}
{{- $log := get (default (dict) .Values.config) "log" }}
{{- if $log }}{{ $_ := set $cfg "log" $log }}{{ end }}
{{- if .Values.proxies.brokerCASecretName }}
{{- $_ := set $cfg "ca_file" "/etc/pamctl/broker-ca/ca.crt" }}
{{- end }}
{{- if .Values.metrics.enabled }}
{{- $_ := set $cfg "metrics" (include "pamctl.metricsConfig" . | fromJson) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* Refuse value combinations this chart cannot render honestly. */}}
{{- define "pamctl.validate" -}}
{{- if not (has .Values.role (list "all" "broker")) }}
{{- fail (printf "role must be all or broker, not %q (proxies are proxies.enabled)" .Values.role) }}
{{- end }}
{{- if not (has .Values.store.backend (list "bbolt" "etcd")) }}
{{- fail (printf "store.backend must be bbolt or etcd, not %q" .Values.store.backend) }}
{{- end }}
{{- if and (eq .Values.store.backend "bbolt") (ne (int .Values.replicas) 1) }}
{{- fail "replicas must be 1 with store.backend bbolt: the bbolt store is one file one process holds; set store.backend etcd for replicas" }}
{{- end }}
{{- if lt (int .Values.replicas) 1 }}
{{- fail "replicas must be at least 1" }}
{{- end }}
{{- if and (eq .Values.store.backend "etcd") (not .Values.store.etcd.endpoints) }}
{{- fail "store.etcd.endpoints is required with store.backend etcd" }}
{{- end }}
{{- if and .Values.store.etcd.username (not .Values.store.etcd.passwordSecret.name) }}
{{- fail "store.etcd.username needs store.etcd.passwordSecret.name (a Secret with the password)" }}
{{- end }}
{{- if not .Values.masterKey.existingSecret }}
{{- fail "masterKey.existingSecret is required: create a Secret holding the base64 master key (see values.yaml) and name it here" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- range $k := list "data_dir" "master_key_file" "role" "store" }}
{{- if hasKey $.Values.config $k }}
{{- fail (printf "config.%s is set by the chart; remove it from config (use the chart's values)" $k) }}
{{- end }}
{{- end }}
{{- end }}
