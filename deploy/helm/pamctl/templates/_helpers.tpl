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

{{/*
The config file: the user's keys with the chart's on top. The chart owns
where pamctl listens and keeps its data.
*/}}
{{- define "pamctl.config" -}}
{{- $cfg := deepCopy (default (dict) .Values.config) }}
{{- $svc := include "pamctl.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- /* The Service's in-cluster names pass the Host checks, with the user's. */}}
{{- $inCluster := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- $broker := default (dict) (get $cfg "broker") }}
{{- $_ := set $broker "addr" (printf "0.0.0.0:%d" (int .Values.broker.port)) }}
{{- $_ := set $broker "hostnames" (concat $inCluster .Values.broker.hostnames | uniq) }}
{{- $proxy := default (dict) (get $cfg "proxy") }}
{{- $_ := set $proxy "addr" (printf "0.0.0.0:%d" (int .Values.proxy.port)) }}
{{- $_ := set $proxy "hostnames" (concat $inCluster .Values.proxy.hostnames | uniq) }}
{{- if .Values.tls.enabled }}
{{- $btls := dict "cert_file" "/etc/pamctl/tls/tls.crt" "key_file" "/etc/pamctl/tls/tls.key" }}
{{- if .Values.tls.clientCASecretName }}{{ $_ := set $btls "client_ca_file" "/etc/pamctl/client-ca/ca.crt" }}{{ end }}
{{- $_ := set $broker "tls" $btls }}
{{- $_ := set $proxy "tls" (dict "cert_file" "/etc/pamctl/tls/tls.crt" "key_file" "/etc/pamctl/tls/tls.key") }}
{{- end }}
{{- $_ := set $cfg "broker" $broker }}
{{- $_ := set $cfg "proxy" $proxy }}
{{- if .Values.metrics.enabled }}
{{- /* Prometheus scrapes over the pod network in plaintext (the ServiceMonitor's default scheme). */}}
{{- $_ := set $cfg "metrics" (dict "addr" (printf "0.0.0.0:%d" (int .Values.metrics.port)) "insecure_plaintext" true) }}
{{- end }}
{{- $_ := set $cfg "data_dir" (printf "%s/data" (include "pamctl.dataMount" .)) }}
{{- toYaml $cfg }}
{{- end }}

{{/* Refuse value combinations this chart cannot render honestly. */}}
{{- define "pamctl.validate" -}}
{{- if ne (int .Values.replicas) 1 }}
{{- fail "replicas must be 1: the bbolt store is one file one process holds; replicas come with the etcd store backend" }}
{{- end }}
{{- if .Values.proxies.separate }}
{{- fail "proxies.separate: separate proxy Deployments come with the team-service roles (role: proxy); this chart runs role all" }}
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
{{- range $k := list "data_dir" "master_key_file" }}
{{- if hasKey $.Values.config $k }}
{{- fail (printf "config.%s is set by the chart; remove it from config" $k) }}
{{- end }}
{{- end }}
{{- end }}
