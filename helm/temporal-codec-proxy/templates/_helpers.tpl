{{/* Shared names, labels, value checks and the proxy container of the temporal-codec-proxy chart. */}}

{{- define "temporal-codec-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "temporal-codec-proxy.fullname" -}}
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

{{- define "temporal-codec-proxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "temporal-codec-proxy.component" -}}
{{- if eq .Values.mode "gateway" -}}gateway{{- else -}}worker{{- end -}}
{{- end -}}

{{- define "temporal-codec-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "temporal-codec-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ include "temporal-codec-proxy.component" . }}
{{- end -}}

{{- define "temporal-codec-proxy.labels" -}}
helm.sh/chart: {{ include "temporal-codec-proxy.chart" . }}
{{ include "temporal-codec-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "temporal-codec-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "temporal-codec-proxy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "temporal-codec-proxy.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret the keys are read from: the user's, or the one the chart makes from inline values. */}}
{{- define "temporal-codec-proxy.keysSecretName" -}}
{{- default (printf "%s-keys" (include "temporal-codec-proxy.fullname" .)) .Values.keys.existingSecret -}}
{{- end -}}

{{- define "temporal-codec-proxy.keysCreated" -}}
{{- if and .Values.keys.items (not .Values.keys.existingSecret) -}}true{{- end -}}
{{- end -}}

{{/* "id=file:PATH,…" in the order given, so the first item stays the encrypting key. */}}
{{- define "temporal-codec-proxy.keySpecs" -}}
{{- $specs := list -}}
{{- range .Values.keys.items -}}
{{- $specs = append $specs (printf "%s=file:/etc/temporal-codec-proxy/keys/%s" .id (default .id .secretKey)) -}}
{{- end -}}
{{- join "," $specs -}}
{{- end -}}

{{/* Seconds in a duration such as 30s, 2m or 1m30s; empty when the form is not one of those. */}}
{{- define "temporal-codec-proxy.durationSeconds" -}}
{{- if regexMatch "^([0-9]+m)?([0-9]+s)?$" . -}}
{{- $minutes := regexFind "[0-9]+m" . | trimSuffix "m" | default "0" | int -}}
{{- $seconds := regexFind "[0-9]+s" . | trimSuffix "s" | default "0" | int -}}
{{- add (mul $minutes 60) $seconds -}}
{{- end -}}
{{- end -}}

{{/*
Refuses values the proxy would refuse at start-up, so a mistake fails `helm install` instead of
leaving a pod in CrashLoopBackOff.
*/}}
{{- define "temporal-codec-proxy.validate" -}}
{{- $v := .Values -}}
{{- if not (has $v.mode (list "sidecar" "gateway")) -}}
{{- fail (printf "mode must be sidecar or gateway, not %q" $v.mode) -}}
{{- end -}}
{{- /* Before 1.29 the API server may drop restartPolicy from an init container, which then never exits and the worker never starts. */ -}}
{{- if and (eq $v.mode "sidecar") $v.sidecar.native (semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version) -}}
{{- fail (printf "sidecar.native needs Kubernetes 1.29 or later (this cluster: %s): set sidecar.native false" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- if not $v.upstream.address -}}
{{- fail "upstream.address is required: the Temporal frontend host:port" -}}
{{- end -}}
{{- if and (empty $v.keys.items) (not $v.kms.keyArn) (not $v.kms.keyTemplate) -}}
{{- fail "no key source: set keys.items (with keys.existingSecret, or with inline values) or kms.keyArn / kms.keyTemplate" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $i, $item := $v.keys.items -}}
{{- if not $item.id -}}
{{- fail (printf "keys.items[%d] needs an id" $i) -}}
{{- end -}}
{{- if regexMatch "[,=]" $item.id -}}
{{- fail (printf "keys.items[%d]: the id %q may not contain ',' or '='" $i $item.id) -}}
{{- end -}}
{{- if hasKey $seen $item.id -}}
{{- fail (printf "keys.items: the id %q appears twice" $item.id) -}}
{{- end -}}
{{- $_ := set $seen $item.id true -}}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+$" (default $item.id $item.secretKey)) -}}
{{- fail (printf "keys.items[%d]: %q is not a valid Secret key; set secretKey" $i (default $item.id $item.secretKey)) -}}
{{- end -}}
{{- if $v.keys.existingSecret -}}
{{- if $item.value -}}
{{- fail (printf "keys.items[%d] (%s) has a value but keys.existingSecret is set: set keys.existingSecret to \"\" to let the chart create the Secret" $i $item.id) -}}
{{- end -}}
{{- else if not $item.value -}}
{{- fail (printf "keys.items[%d] (%s) needs a value, or set keys.existingSecret" $i $item.id) -}}
{{- end -}}
{{- end -}}
{{- if not (has $v.listener.auth (list "none" "jwt")) -}}
{{- fail (printf "listener.auth must be none or jwt, not %q" $v.listener.auth) -}}
{{- end -}}
{{- if and (eq $v.listener.auth "jwt") (not $v.listener.jwt.jwksUrl) -}}
{{- fail "listener.auth jwt needs listener.jwt.jwksUrl" -}}
{{- end -}}
{{- if eq $v.mode "gateway" -}}
{{- if not $v.listener.allowUnauthenticatedPlaintext -}}
{{- if not $v.listener.tls.secretName -}}
{{- fail "gateway mode listens on the pod address: set listener.tls.secretName (a kubernetes.io/tls Secret), or listener.allowUnauthenticatedPlaintext if a mesh encrypts the traffic" -}}
{{- end -}}
{{- if and (eq $v.listener.auth "none") (not $v.listener.clientCa.secretName) -}}
{{- fail "gateway mode needs caller authentication: listener.auth jwt or listener.clientCa.secretName, or listener.allowUnauthenticatedPlaintext if something else guards the port" -}}
{{- end -}}
{{- end -}}
{{- else if or $v.listener.tls.secretName $v.listener.clientCa.secretName (ne $v.listener.auth "none") -}}
{{- fail "listener.tls, listener.clientCa and listener.auth apply to gateway mode; in sidecar mode the worker connects over the pod's loopback" -}}
{{- end -}}
{{- if not (has $v.codecServer.auth (list "none" "jwt")) -}}
{{- fail (printf "codecServer.auth must be none or jwt, not %q" $v.codecServer.auth) -}}
{{- end -}}
{{- if not (has $v.codecServer.rolesFrom (list "cloud" "claims")) -}}
{{- fail (printf "codecServer.rolesFrom must be cloud or claims, not %q" $v.codecServer.rolesFrom) -}}
{{- end -}}
{{- if $v.codecServer.enabled -}}
{{- if and (eq $v.codecServer.auth "none") (not $v.codecServer.allowUnauthenticatedDecryption) -}}
{{- fail "codecServer.enabled with auth none would let anyone who reaches the port decrypt every payload: use codecServer.auth jwt, or set codecServer.allowUnauthenticatedDecryption if something else guards the port" -}}
{{- end -}}
{{- if and (eq $v.codecServer.auth "jwt") (eq $v.codecServer.rolesFrom "cloud") (not $v.upstream.apiKey.existingSecret) -}}
{{- fail "codecServer.rolesFrom cloud asks the Temporal Cloud Ops API for users' roles: set upstream.apiKey.existingSecret, or codecServer.rolesFrom claims" -}}
{{- end -}}
{{- end -}}
{{- if not (has $v.log.format (list "json" "text")) -}}
{{- fail (printf "log.format must be json or text, not %q" $v.log.format) -}}
{{- end -}}
{{- $grace := include "temporal-codec-proxy.durationSeconds" $v.shutdownGrace -}}
{{- if and $grace (le (int $v.terminationGracePeriodSeconds) (int $grace)) -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed shutdownGrace (%s), or the kubelet kills calls still draining" $v.terminationGracePeriodSeconds $v.shutdownGrace) -}}
{{- end -}}
{{- end -}}

{{/* Bytes in a Kubernetes memory quantity ("512Mi", "1G", "268435456"); fails on other forms. */}}
{{- define "temporal-codec-proxy.quantityBytes" -}}
{{- $quantity := toString . -}}
{{- $digits := regexFind "^[0-9]+" $quantity -}}
{{- $unit := trimPrefix $digits $quantity -}}
{{- $factors := dict "" 1 "k" 1000 "K" 1000 "M" 1000000 "G" 1000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 -}}
{{- if or (not $digits) (not (hasKey $factors $unit)) -}}
{{- fail (printf "cannot read the memory quantity %q: set maxBufferedBytes to a number of bytes" $quantity) -}}
{{- end -}}
{{- mul (int64 $digits) (get $factors $unit) -}}
{{- end -}}

{{/* --max-buffered-bytes: maxBufferedBytes, else half the container's memory limit, else the proxy's default. */}}
{{- define "temporal-codec-proxy.maxBufferedBytes" -}}
{{- $v := .Values -}}
{{- if $v.maxBufferedBytes -}}
{{- int64 $v.maxBufferedBytes -}}
{{- else if and $v.resources $v.resources.limits $v.resources.limits.memory -}}
{{- div (int64 (include "temporal-codec-proxy.quantityBytes" $v.resources.limits.memory)) 2 -}}
{{- end -}}
{{- end -}}

{{/* The proxy's settings, all as environment variables so `kubectl describe` shows them. */}}
{{- define "temporal-codec-proxy.env" -}}
{{- $v := .Values -}}
{{- $gateway := eq $v.mode "gateway" -}}
- name: TEMPORAL_CODEC_PROXY_LISTEN
  value: {{ printf "%s:%d" (ternary "0.0.0.0" "127.0.0.1" $gateway) (int $v.listener.port) | quote }}
- name: TEMPORAL_CODEC_PROXY_UPSTREAM
  value: {{ $v.upstream.address | quote }}
- name: TEMPORAL_CODEC_PROXY_UPSTREAM_CONNECTIONS
  value: {{ $v.upstream.connections | int | toString | quote }}
{{- with $v.upstream.namespace }}
- name: TEMPORAL_NAMESPACE
  value: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" $v.upstream.tls.enabled) }}
- name: TEMPORAL_CODEC_PROXY_UPSTREAM_TLS
  value: {{ ternary "true" "false" (eq (toString $v.upstream.tls.enabled) "true") | quote }}
{{- end }}
{{- with $v.upstream.tls.serverName }}
- name: TEMPORAL_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- if $v.upstream.tls.caSecret.name }}
- name: TEMPORAL_TLS_CA
  value: {{ printf "/etc/temporal-codec-proxy/upstream-ca/%s" $v.upstream.tls.caSecret.key | quote }}
{{- end }}
{{- if $v.upstream.tls.clientCertSecret }}
- name: TEMPORAL_TLS_CERT
  value: /etc/temporal-codec-proxy/upstream-tls/tls.crt
- name: TEMPORAL_TLS_KEY
  value: /etc/temporal-codec-proxy/upstream-tls/tls.key
{{- end }}
{{- if $v.upstream.apiKey.existingSecret }}
- name: TEMPORAL_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.upstream.apiKey.existingSecret }}
      key: {{ $v.upstream.apiKey.key }}
{{- end }}
{{- if $v.keys.items }}
- name: TEMPORAL_CODEC_PROXY_KEYS
  value: {{ include "temporal-codec-proxy.keySpecs" . | quote }}
{{- end }}
{{- with $v.kms.keyArn }}
- name: AWS_KMS_CMK_ARN
  value: {{ . | quote }}
{{- end }}
{{- with $v.kms.keyTemplate }}
- name: TEMPORAL_CODEC_PROXY_KMS_KEY_TEMPLATE
  value: {{ . | quote }}
{{- end }}
{{- with $v.kms.region }}
- name: TEMPORAL_CODEC_PROXY_KMS_REGION
  value: {{ . | quote }}
{{- end }}
{{- with $v.kms.endpoint }}
- name: TEMPORAL_CODEC_PROXY_KMS_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if $gateway }}
{{- if $v.listener.tls.secretName }}
- name: TEMPORAL_CODEC_PROXY_LISTEN_TLS_CERT
  value: /etc/temporal-codec-proxy/listen-tls/tls.crt
- name: TEMPORAL_CODEC_PROXY_LISTEN_TLS_KEY
  value: /etc/temporal-codec-proxy/listen-tls/tls.key
{{- end }}
{{- if $v.listener.clientCa.secretName }}
- name: TEMPORAL_CODEC_PROXY_LISTEN_CLIENT_CA
  value: {{ printf "/etc/temporal-codec-proxy/listen-client-ca/%s" $v.listener.clientCa.key | quote }}
{{- end }}
- name: TEMPORAL_CODEC_PROXY_LISTEN_AUTH
  value: {{ $v.listener.auth | quote }}
{{- if eq $v.listener.auth "jwt" }}
- name: TEMPORAL_CODEC_PROXY_LISTEN_JWKS_URL
  value: {{ $v.listener.jwt.jwksUrl | quote }}
{{- with $v.listener.jwt.audiences }}
- name: TEMPORAL_CODEC_PROXY_LISTEN_JWT_AUDIENCES
  value: {{ join "," . | quote }}
{{- end }}
{{- with $v.listener.jwt.issuer }}
- name: TEMPORAL_CODEC_PROXY_LISTEN_JWT_ISSUER
  value: {{ . | quote }}
{{- end }}
{{- with $v.listener.jwt.tokenFrom }}
- name: TEMPORAL_CODEC_PROXY_LISTEN_TOKEN_FROM
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if $v.listener.allowUnauthenticatedPlaintext }}
- name: TEMPORAL_CODEC_PROXY_LISTEN_ALLOW_UNAUTHENTICATED_PLAINTEXT
  value: "true"
{{- end }}
{{- end }}
{{- $codecHost := "127.0.0.1" }}
{{- if $v.codecServer.enabled }}
{{- $codecHost = "0.0.0.0" }}
{{- end }}
- name: TEMPORAL_CODEC_PROXY_CODEC_LISTEN
  value: {{ printf "%s:%d" $codecHost (int $v.codecServer.port) | quote }}
{{- if $v.codecServer.enabled }}
{{- if $v.codecServer.tls.secretName }}
- name: SSL_PEM
  value: /etc/temporal-codec-proxy/codec-tls/tls.crt
- name: SSL_KEY
  value: /etc/temporal-codec-proxy/codec-tls/tls.key
{{- end }}
- name: TEMPORAL_CODEC_PROXY_CODEC_AUTH
  value: {{ $v.codecServer.auth | quote }}
{{- if eq $v.codecServer.auth "jwt" }}
{{- with $v.codecServer.jwksUrl }}
- name: TEMPORAL_CODEC_PROXY_CODEC_JWKS_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.codecServer.audiences }}
- name: TEMPORAL_CODEC_PROXY_CODEC_JWT_AUDIENCES
  value: {{ join "," . | quote }}
{{- end }}
{{- with $v.codecServer.issuer }}
- name: TEMPORAL_CODEC_PROXY_CODEC_JWT_ISSUER
  value: {{ . | quote }}
{{- end }}
{{- with $v.codecServer.tokenFrom }}
- name: TEMPORAL_CODEC_PROXY_CODEC_TOKEN_FROM
  value: {{ . | quote }}
{{- end }}
- name: TEMPORAL_CODEC_PROXY_CODEC_ROLES_FROM
  value: {{ $v.codecServer.rolesFrom | quote }}
{{- end }}
{{- with $v.codecServer.corsOrigins }}
- name: TEMPORAL_CODEC_PROXY_CODEC_CORS_ORIGINS
  value: {{ join "," . | quote }}
{{- end }}
{{- if $v.codecServer.allowUnauthenticatedDecryption }}
- name: TEMPORAL_CODEC_PROXY_CODEC_ALLOW_UNAUTHENTICATED_DECRYPTION
  value: "true"
{{- end }}
{{- end }}
- name: TEMPORAL_CODEC_PROXY_ADMIN_LISTEN
  value: {{ printf "0.0.0.0:%d" (int $v.admin.port) | quote }}
- name: TEMPORAL_CODEC_PROXY_SHUTDOWN_GRACE
  value: {{ $v.shutdownGrace | quote }}
{{- $buffered := include "temporal-codec-proxy.maxBufferedBytes" . }}
{{- if $buffered }}
- name: TEMPORAL_CODEC_PROXY_MAX_BUFFERED_BYTES
  value: {{ $buffered | quote }}
{{- if lt (int64 $buffered) 134217728 }}
- name: TEMPORAL_CODEC_PROXY_MAX_MESSAGE_BYTES
  value: {{ $buffered | quote }}
{{- end }}
{{- end }}
- name: RUST_LOG
  value: {{ $v.log.level | quote }}
- name: TEMPORAL_CODEC_PROXY_LOG_FORMAT
  value: {{ $v.log.format | quote }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Secret volumes, mounted as directories (no subPath) so renewed certificates reach the running proxy. */}}
{{- define "temporal-codec-proxy.volumeMounts" -}}
{{- $v := .Values -}}
{{- if $v.keys.items }}
- name: keys
  mountPath: /etc/temporal-codec-proxy/keys
  readOnly: true
{{- end }}
{{- if $v.upstream.tls.caSecret.name }}
- name: upstream-ca
  mountPath: /etc/temporal-codec-proxy/upstream-ca
  readOnly: true
{{- end }}
{{- if $v.upstream.tls.clientCertSecret }}
- name: upstream-tls
  mountPath: /etc/temporal-codec-proxy/upstream-tls
  readOnly: true
{{- end }}
{{- if and (eq $v.mode "gateway") $v.listener.tls.secretName }}
- name: listen-tls
  mountPath: /etc/temporal-codec-proxy/listen-tls
  readOnly: true
{{- end }}
{{- if and (eq $v.mode "gateway") $v.listener.clientCa.secretName }}
- name: listen-client-ca
  mountPath: /etc/temporal-codec-proxy/listen-client-ca
  readOnly: true
{{- end }}
{{- if and $v.codecServer.enabled $v.codecServer.tls.secretName }}
- name: codec-tls
  mountPath: /etc/temporal-codec-proxy/codec-tls
  readOnly: true
{{- end }}
{{- with $v.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* 0440 with the pod's fsGroup: readable by the proxy's group, by no one else. */}}
{{- define "temporal-codec-proxy.volumes" -}}
{{- $v := .Values -}}
{{- if $v.keys.items }}
- name: keys
  secret:
    secretName: {{ include "temporal-codec-proxy.keysSecretName" . }}
    defaultMode: 0440
    items:
      {{- range $v.keys.items }}
      - key: {{ default .id .secretKey | quote }}
        path: {{ default .id .secretKey | quote }}
      {{- end }}
{{- end }}
{{- if $v.upstream.tls.caSecret.name }}
- name: upstream-ca
  secret:
    secretName: {{ $v.upstream.tls.caSecret.name }}
    defaultMode: 0440
    items:
      - key: {{ $v.upstream.tls.caSecret.key | quote }}
        path: {{ $v.upstream.tls.caSecret.key | quote }}
{{- end }}
{{- if $v.upstream.tls.clientCertSecret }}
- name: upstream-tls
  secret:
    secretName: {{ $v.upstream.tls.clientCertSecret }}
    defaultMode: 0440
{{- end }}
{{- if and (eq $v.mode "gateway") $v.listener.tls.secretName }}
- name: listen-tls
  secret:
    secretName: {{ $v.listener.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- if and (eq $v.mode "gateway") $v.listener.clientCa.secretName }}
- name: listen-client-ca
  secret:
    secretName: {{ $v.listener.clientCa.secretName }}
    defaultMode: 0440
    items:
      - key: {{ $v.listener.clientCa.key | quote }}
        path: {{ $v.listener.clientCa.key | quote }}
{{- end }}
{{- if and $v.codecServer.enabled $v.codecServer.tls.secretName }}
- name: codec-tls
  secret:
    secretName: {{ $v.codecServer.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- with $v.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The proxy container; as a native sidecar (an init container) it also gets restartPolicy and a startup probe. */}}
{{- define "temporal-codec-proxy.proxyContainer" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
- name: proxy
  image: {{ include "temporal-codec-proxy.image" $root | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if .native }}
  restartPolicy: Always
  {{- end }}
  args:
    - serve
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    {{- include "temporal-codec-proxy.env" $root | nindent 4 }}
  ports:
    {{- if eq $v.mode "gateway" }}
    - name: grpc
      containerPort: {{ $v.listener.port }}
      protocol: TCP
    {{- end }}
    {{- if $v.codecServer.enabled }}
    - name: codec
      containerPort: {{ $v.codecServer.port }}
      protocol: TCP
    {{- end }}
    - name: admin
      containerPort: {{ $v.admin.port }}
      protocol: TCP
  {{- if .native }}
  startupProbe:
    httpGet:
      path: /healthz
      port: admin
    periodSeconds: {{ $v.probes.startup.periodSeconds }}
    timeoutSeconds: {{ $v.probes.startup.timeoutSeconds }}
    failureThreshold: {{ $v.probes.startup.failureThreshold }}
  {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: admin
    initialDelaySeconds: {{ $v.probes.liveness.initialDelaySeconds }}
    periodSeconds: {{ $v.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
    failureThreshold: {{ $v.probes.liveness.failureThreshold }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: admin
    initialDelaySeconds: {{ $v.probes.readiness.initialDelaySeconds }}
    periodSeconds: {{ $v.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
    failureThreshold: {{ $v.probes.readiness.failureThreshold }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (include "temporal-codec-proxy.volumeMounts" $root) }}
  volumeMounts:
    {{- . | trim | nindent 4 }}
  {{- end }}
{{- end -}}
