{{/*
The main workload's pod template: a StatefulSet's (bbolt) or a
Deployment's (etcd).
*/}}
{{- define "pamctl.pod" -}}
metadata:
  labels:
    {{- include "pamctl.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A config change rolls the pods: pamctl does not follow ConfigMap updates.
    checksum/config: {{ include "pamctl.config" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "pamctl.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  enableServiceLinks: false
  containers:
    - name: pamctl
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["serve", "--config", "/etc/pamctl/config.yaml"]
      env:
        - name: PAMCTL_CONFIG
          value: /etc/pamctl/config.yaml
        - name: PAMCTL_DATA_DIR
          value: {{ include "pamctl.dataMount" . }}/data
        # The CLI run with `kubectl exec` keeps its session here.
        - name: XDG_CONFIG_HOME
          value: /tmp/pamctl
        - name: PAMCTL_MASTER_KEY
          valueFrom:
            secretKeyRef:
              name: {{ .Values.masterKey.existingSecret }}
              key: {{ .Values.masterKey.key }}
      ports:
        - name: broker
          containerPort: {{ .Values.broker.port }}
        {{- if eq .Values.role "all" }}
        - name: proxy
          containerPort: {{ .Values.proxy.port }}
        {{- end }}
        {{- if .Values.metrics.enabled }}
        - name: metrics
          containerPort: {{ .Values.metrics.port }}
        {{- end }}
      # /healthz: the process serves; /readyz: every critical check passes.
      # Both roles answer them; role all on its proxy port, whose TLS asks
      # for no client certificate. A broker alone with
      # tls.clientCASecretName takes only connections with a client
      # certificate, which the kubelet has none of: its liveness is TCP,
      # and its readiness /readyz on the metrics port (which asks for none)
      # with metrics.enabled, else TCP too. (An image older than the
      # metrics port's /readyz answers 404 there: not ready, never
      # restarted.)
      {{- $probePort := ternary "proxy" "broker" (eq .Values.role "all") }}
      {{- $mtls := and .Values.tls.enabled .Values.tls.clientCASecretName (ne .Values.role "all") }}
      {{- $tcpOnly := $mtls }}
      livenessProbe:
        {{- if $tcpOnly }}
        tcpSocket:
          port: broker
        {{- else }}
        httpGet:
          path: /healthz
          port: {{ $probePort }}
          scheme: {{ ternary "HTTPS" "HTTP" .Values.tls.enabled }}
        {{- end }}
        {{- toYaml .Values.probes.liveness | nindent 8 }}
      readinessProbe:
        {{- if and $mtls .Values.metrics.enabled }}
        httpGet:
          path: /readyz
          port: metrics
          scheme: {{ ternary "HTTPS" "HTTP" .Values.tls.enabled }}
        {{- else if $tcpOnly }}
        tcpSocket:
          port: broker
        {{- else }}
        httpGet:
          path: /readyz
          port: {{ $probePort }}
          scheme: {{ ternary "HTTPS" "HTTP" .Values.tls.enabled }}
        {{- end }}
        {{- toYaml .Values.probes.readiness | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: {{ include "pamctl.dataMount" . }}
        - name: config
          mountPath: /etc/pamctl/config.yaml
          subPath: config.yaml
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: /etc/pamctl/tls
          readOnly: true
        {{- if .Values.tls.clientCASecretName }}
        - name: client-ca
          mountPath: /etc/pamctl/client-ca
          readOnly: true
        {{- end }}
        {{- end }}
        {{- if and (eq .Values.store.backend "etcd") .Values.store.etcd.tlsSecretName }}
        - name: etcd-tls
          mountPath: /etc/pamctl/etcd
          readOnly: true
        {{- end }}
        {{- if and (eq .Values.store.backend "etcd") .Values.store.etcd.username }}
        - name: etcd-password
          mountPath: /etc/pamctl/etcd-password
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "pamctl.fullname" . }}
    - name: tmp
      emptyDir:
        medium: Memory
        sizeLimit: 16Mi
    {{- if eq .Values.store.backend "etcd" }}
    # The state is in etcd; the data dir holds the admin socket only.
    - name: data
      emptyDir:
        sizeLimit: 64Mi
    {{- end }}
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ .Values.tls.secretName }}
        defaultMode: 0400
    {{- if .Values.tls.clientCASecretName }}
    - name: client-ca
      secret:
        secretName: {{ .Values.tls.clientCASecretName }}
        defaultMode: 0444
    {{- end }}
    {{- end }}
    {{- if and (eq .Values.store.backend "etcd") .Values.store.etcd.tlsSecretName }}
    - name: etcd-tls
      secret:
        secretName: {{ .Values.store.etcd.tlsSecretName }}
        defaultMode: 0400
    {{- end }}
    {{- if and (eq .Values.store.backend "etcd") .Values.store.etcd.username }}
    - name: etcd-password
      secret:
        secretName: {{ .Values.store.etcd.passwordSecret.name }}
        defaultMode: 0400
        items:
          - key: {{ .Values.store.etcd.passwordSecret.key }}
            path: password
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
