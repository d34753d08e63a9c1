{{- define "switchyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "switchyard.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "switchyard.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "switchyard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "switchyard.configSecret" -}}
{{- .Values.config.existingSecret | default (printf "%s-config" (include "switchyard.fullname" .)) -}}
{{- end -}}

{{- define "switchyard.saslSecret" -}}
{{- .Values.kafka.sasl.existingSecret | default (printf "%s-kafka" (include "switchyard.fullname" .)) -}}
{{- end -}}

{{- define "switchyard.masterKeySecret" -}}
{{- .Values.masterKey.existingSecret | default (printf "%s-master-key" (include "switchyard.fullname" .)) -}}
{{- end -}}

{{- define "switchyard.databaseSecret" -}}
{{- .Values.control.database.existingSecret | default (printf "%s-database" (include "switchyard.fullname" .)) -}}
{{- end -}}

{{/* Whether ingest and routers run the control plane's workspace live. */}}
{{- define "switchyard.readsWorkspace" -}}
{{- if and .Values.control.enabled .Values.control.workspace.id -}}true{{- end -}}
{{- end -}}

{{/* Which pods hold the master key: (dict "root" . "component" C). */}}
{{- define "switchyard.needsMasterKey" -}}
{{- $v := .root.Values -}}
{{- if or (eq .component "control") (eq .component "setup") (eq .component "backup") (include "switchyard.readsWorkspace" .root) (and (eq .component "router") $v.archive.enabled) -}}true{{- end -}}
{{- end -}}

{{/* Which pods open the metadata database. */}}
{{- define "switchyard.needsDatabase" -}}
{{- if or (eq .component "control") (eq .component "setup") (eq .component "backup") (include "switchyard.readsWorkspace" .root) -}}true{{- end -}}
{{- end -}}

{{- define "switchyard.saslEnabled" -}}
{{- if or .Values.kafka.sasl.existingSecret .Values.kafka.sasl.username -}}true{{- end -}}
{{- end -}}

{{/* The configuration file, from values; listen addresses are the chart's. */}}
{{- define "switchyard.config" -}}
{{- $kafka := dict "brokers" .Values.kafka.brokers "topic" .Values.kafka.topic "options" .Values.kafka.options -}}
{{- with .Values.kafka.securityProtocol -}}
{{- $_ := set $kafka "security_protocol" (lower .) -}}
{{- end -}}
{{- if .Values.kafka.allowPlaintextSasl -}}
{{- $_ := set $kafka "allow_plaintext_sasl" true -}}
{{- end -}}
{{- $tls := .Values.kafka.tls -}}
{{- if $tls.existingSecret -}}
{{- $files := dict "verify_hostname" $tls.verifyHostname -}}
{{- with $tls.caKey -}}{{- $_ := set $files "ca_file" (printf "%s/%s" $tls.mountPath .) -}}{{- end -}}
{{- with $tls.certKey -}}{{- $_ := set $files "cert_file" (printf "%s/%s" $tls.mountPath .) -}}{{- end -}}
{{- with $tls.keyKey -}}{{- $_ := set $files "key_file" (printf "%s/%s" $tls.mountPath .) -}}{{- end -}}
{{- $_ := set $kafka "tls" $files -}}
{{- end -}}
{{- if and .Values.kafka.sasl.mechanism (include "switchyard.saslEnabled" .) -}}
{{- $_ := set $kafka "sasl" (dict "mechanism" .Values.kafka.sasl.mechanism "username_env" "SWITCHYARD_KAFKA_SASL_USERNAME" "password_env" "SWITCHYARD_KAFKA_SASL_PASSWORD") -}}
{{- end -}}
{{- $ingest := dict "listen" (printf "0.0.0.0:%d" (int .Values.ingest.port)) "allow_plain_http" true "trusted_proxies" (ternary 1 0 .Values.ingress.enabled) -}}
{{- $ops := dict "listen" (printf "0.0.0.0:%d" (int .Values.ops.port)) -}}
{{- $config := dict "kafka" $kafka "ingest" $ingest "ops" $ops "router" .Values.config.router "sources" .Values.config.sources "destinations" .Values.config.destinations "egress" (.Values.config.egress | default dict) -}}
{{- if .Values.archive.enabled -}}
{{- $archive := dict "store" (include "switchyard.store" .Values.archive.store | fromYaml) "prefix" .Values.archive.prefix "max_object_bytes" (int .Values.archive.maxObjectBytes) "max_object_age_secs" (int .Values.archive.maxObjectAgeSecs) "suppression_refresh_secs" (int .Values.archive.suppressionRefreshSecs) -}}
{{- if .Values.archive.replica.bucket -}}
{{- $_ := set $archive "replica" (include "switchyard.store" .Values.archive.replica | fromYaml) -}}
{{- end -}}
{{- $_ := set $config "archive" $archive -}}
{{- end -}}
{{- if .Values.control.enabled -}}
{{- $c := .Values.control -}}
{{- $control := dict "listen" (printf "0.0.0.0:%d" (int $c.port)) "trusted_proxies" (ternary 1 0 $c.ingress.enabled) "debugger_streams" (int $c.debuggerStreams) "refresh_secs" (int $c.workspace.refreshSecs) -}}
{{- if $c.tls.existingSecret -}}
{{- $_ := set $control "tls_cert_path" "/etc/switchyard-control-tls/tls.crt" -}}
{{- $_ := set $control "tls_key_path" "/etc/switchyard-control-tls/tls.key" -}}
{{- else -}}
{{- $_ := set $control "allow_plain_http" true -}}
{{- end -}}
{{- with $c.workspace.id -}}
{{- $_ := set $control "workspace" . -}}
{{- end -}}
{{- if $c.backup.enabled -}}
{{- $store := ternary $c.backup.store .Values.archive.store (ne $c.backup.store.bucket "") -}}
{{- /* interval 0: the CronJob takes them, not every replica of the server. */ -}}
{{- $_ := set $control "backup" (dict "store" (include "switchyard.store" $store | fromYaml) "prefix" $c.backup.prefix "interval_secs" 0) -}}
{{- end -}}
{{- $_ := set $config "control" $control -}}
{{- end -}}
{{- toToml $config -}}
{{- end -}}

{{/* One archive store (values shape) as the configuration file's shape. */}}
{{- define "switchyard.store" -}}
kind: s3
bucket: {{ .bucket | quote }}
region: {{ .region | quote }}
sse: {{ .sse | quote }}
{{- with .endpoint }}
endpoint: {{ . | quote }}
allow_http: {{ hasPrefix "http://" . }}
{{- end }}
{{- with .kmsKeyId }}
kms_key_id: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* A component's secrets as environment: (dict "root" . "component" C). The setup
     Job reads chart-made ones from its own hook Secret (see setup-job.yaml). */}}
{{- define "switchyard.componentEnv" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $setup := printf "%s-setup" (include "switchyard.fullname" $root) -}}
{{- if include "switchyard.needsMasterKey" . }}
- name: SWITCHYARD_MASTER_KEY_FILE
  value: /etc/switchyard-master/{{ $v.masterKey.key }}
{{- end }}
{{- if include "switchyard.needsDatabase" . }}
- name: SWITCHYARD_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ ternary $setup (include "switchyard.databaseSecret" $root) (and (eq .component "setup") (not $v.control.database.existingSecret)) }}
      key: {{ $v.control.database.key }}
{{- end }}
{{- if or (and (eq .component "router") $v.archive.enabled) (eq .component "backup") }}
{{- include "switchyard.s3Env" $root }}
{{- end }}
{{- end -}}

{{/* S3 credentials for the archive's (and backups') bucket. */}}
{{- define "switchyard.s3Env" -}}
{{- with .Values.archive.credentials.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- end -}}

{{/* The master key's volume and mount, for the pods that hold it. */}}
{{- define "switchyard.masterKeyVolume" -}}
{{- if include "switchyard.needsMasterKey" . }}
- name: master-key
  secret:
    secretName: {{ ternary (printf "%s-setup" (include "switchyard.fullname" .root)) (include "switchyard.masterKeySecret" .root) (and (eq .component "setup") (not .root.Values.masterKey.existingSecret)) }}
    defaultMode: 0400
    items:
      - key: {{ .root.Values.masterKey.key }}
        path: {{ .root.Values.masterKey.key }}
{{- end }}
{{- end -}}

{{- define "switchyard.masterKeyMount" -}}
{{- if include "switchyard.needsMasterKey" . }}
- name: master-key
  mountPath: /etc/switchyard-master
  readOnly: true
{{- end }}
{{- end -}}

{{/* What every Switchyard pod shares: security context, config volume, probes. */}}
{{- define "switchyard.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "switchyard.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* What every container is told; the Jobs, which never talk to Kafka, only this. */}}
{{- define "switchyard.baseEnv" -}}
- name: SWITCHYARD_CONFIG
  value: /etc/switchyard/switchyard.toml
- name: SWITCHYARD_LOG_FORMAT
  value: json
{{- end -}}

{{- define "switchyard.env" -}}
{{ include "switchyard.baseEnv" . }}
{{- if include "switchyard.saslEnabled" . }}
- name: SWITCHYARD_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "switchyard.saslSecret" . }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: SWITCHYARD_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "switchyard.saslSecret" . }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- if .Values.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otlpEndpoint | quote }}
{{- end }}
{{- end -}}

{{/* The Kafka TLS Secret, for the pods that talk to Kafka. */}}
{{- define "switchyard.kafkaTlsVolume" -}}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "switchyard.kafkaTlsMount" -}}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ .Values.kafka.tls.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Probes on the ops port, or for the control plane (no ops port) on its own:
     (dict "port" NAME "scheme" HTTP|HTTPS). */}}
{{- define "switchyard.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
    scheme: {{ .scheme }}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
    scheme: {{ .scheme }}
  periodSeconds: 5
  failureThreshold: 2
{{- end -}}

{{- define "switchyard.volumes" -}}
- name: config
  secret:
    secretName: {{ include "switchyard.configSecret" . }}
- name: tmp
  emptyDir: {}
{{- include "switchyard.kafkaTlsVolume" . }}
{{- end -}}

{{- define "switchyard.volumeMounts" -}}
- name: config
  mountPath: /etc/switchyard
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- include "switchyard.kafkaTlsMount" . }}
{{- end -}}

{{/* One Deployment per role: the same binary, the role as its subcommand.
     (dict "root" . "component" C "args" [...] "replicas" N "resources" R "autoscaled" B) */}}
{{- define "switchyard.deployment" -}}
{{- $root := .root -}}
{{- $control := eq .component "control" -}}
{{- $scheme := ternary "HTTPS" "HTTP" (and $control (ne $root.Values.control.tls.existingSecret "")) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "switchyard.fullname" $root }}-{{ .component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "switchyard.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
  annotations:
    {{- include "switchyard.checkovSkips" $root | nindent 4 }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "switchyard.selector" (dict "root" $root "component" .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "switchyard.selector" (dict "root" $root "component" .component) | nindent 8 }}
      {{- with $root.Values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      {{- include "switchyard.podSpec" $root | nindent 6 }}
      # Long enough for a router to finish in-flight deliveries and commit.
      terminationGracePeriodSeconds: 60
      containers:
        - name: {{ .component }}
          image: {{ include "switchyard.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: {{ toJson .args }}
          env:
            {{- include "switchyard.env" $root | nindent 12 }}
            {{- include "switchyard.componentEnv" . | nindent 12 }}
          ports:
            {{- if eq .component "ingest" }}
            - name: http
              containerPort: {{ $root.Values.ingest.port }}
              protocol: TCP
            {{- end }}
            {{- if $control }}
            - name: admin
              containerPort: {{ $root.Values.control.port }}
              protocol: TCP
            {{- else }}
            - name: ops
              containerPort: {{ $root.Values.ops.port }}
              protocol: TCP
            {{- end }}
          {{- include "switchyard.probes" (dict "port" (ternary "admin" "ops" $control) "scheme" $scheme) | nindent 10 }}
          resources:
            {{- toYaml .resources | nindent 12 }}
          securityContext:
            {{- include "switchyard.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            {{- include "switchyard.volumeMounts" $root | nindent 12 }}
            {{- include "switchyard.masterKeyMount" . | nindent 12 }}
            {{- if and $control $root.Values.control.tls.existingSecret }}
            - name: control-tls
              mountPath: /etc/switchyard-control-tls
              readOnly: true
            {{- end }}
      volumes:
        {{- include "switchyard.volumes" $root | nindent 8 }}
        {{- include "switchyard.masterKeyVolume" . | nindent 8 }}
        {{- if and $control $root.Values.control.tls.existingSecret }}
        - name: control-tls
          secret:
            secretName: {{ $root.Values.control.tls.existingSecret }}
            defaultMode: 0440
        {{- end }}
{{- end -}}

{{/* Why checkov's findings that remain do not apply; every workload carries them. */}}
{{- define "switchyard.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_43=the image is pinned by tag (the chart's appVersion); set image.tag to a digest reference to pin it harder
checkov.io/skip2: CKV_K8S_15=IfNotPresent is right for immutable version tags; set image.pullPolicy to Always for mutable ones
checkov.io/skip3: CKV_K8S_35=librdkafka takes SASL credentials and sqlx the database URL as settings; they come from Secrets into the environment, never into the config file
{{- end -}}

{{/* What every pod spec shares: no API token, pull secrets, hardening, placement. */}}
{{- define "switchyard.podSpec" -}}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "switchyard.podSecurityContext" . | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
