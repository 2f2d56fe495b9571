{{/* Names and labels. */}}
{{- define "livetables.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "livetables.fullname" -}}
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

{{- define "livetables.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "livetables.selectorLabels" -}}
app.kubernetes.io/name: {{ include "livetables.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "livetables.labels" -}}
helm.sh/chart: {{ include "livetables.chart" . }}
{{ include "livetables.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: livetables
{{- end }}

{{- define "livetables.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "livetables.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "livetables.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where the pod finds its files. */}}
{{- define "livetables.configDir" -}}/etc/livetables{{- end }}
{{- define "livetables.tlsDir" -}}/etc/livetables/kafka-tls{{- end }}

{{/* The Secret the chart creates for Kafka credentials given as values. */}}
{{- define "livetables.kafkaSecretName" -}}
{{- printf "%s-kafka" (include "livetables.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "true" when the chart creates the Kafka Secret from values. */}}
{{- define "livetables.createKafkaSecret" -}}
{{- $sasl := .Values.kafka.sasl }}
{{- $tls := .Values.kafka.tls }}
{{- $fromValuesSasl := and $sasl.enabled (not $sasl.existingSecret) }}
{{- $fromValuesTls := and $tls.enabled (not $tls.existingSecret) (or $tls.ca $tls.cert $tls.key) }}
{{- if or $fromValuesSasl $fromValuesTls }}true{{ end }}
{{- end }}

{{/*
The TLS files to mount, as a list of {key, path} from the Secret that holds them.
Renders YAML: `secret: NAME` and `items: [...]`, or nothing.
*/}}
{{- define "livetables.tlsFiles" -}}
{{- $tls := .Values.kafka.tls }}
{{- if $tls.enabled }}
{{- $items := list }}
{{- if $tls.existingSecret }}
{{- if $tls.caKey }}{{ $items = append $items (dict "key" $tls.caKey "path" "ca.crt") }}{{ end }}
{{- if $tls.certKey }}{{ $items = append $items (dict "key" $tls.certKey "path" "client.crt") }}{{ end }}
{{- if $tls.keyKey }}{{ $items = append $items (dict "key" $tls.keyKey "path" "client.key") }}{{ end }}
{{- else }}
{{- if $tls.ca }}{{ $items = append $items (dict "key" "ca.crt" "path" "ca.crt") }}{{ end }}
{{- if $tls.cert }}{{ $items = append $items (dict "key" "tls.crt" "path" "client.crt") }}{{ end }}
{{- if $tls.key }}{{ $items = append $items (dict "key" "tls.key" "path" "client.key") }}{{ end }}
{{- end }}
{{- if $items }}
secret: {{ $tls.existingSecret | default (include "livetables.kafkaSecretName" .) }}
items:
  {{- toYaml $items | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}

{{/* librdkafka properties derived from kafka.sasl and kafka.tls (no secrets). */}}
{{- define "livetables.derivedClient" -}}
{{- $sasl := .Values.kafka.sasl }}
{{- $tls := .Values.kafka.tls }}
{{- $client := dict }}
{{- if and $sasl.enabled $tls.enabled }}
{{- $_ := set $client "security.protocol" "SASL_SSL" }}
{{- else if $sasl.enabled }}
{{- $_ := set $client "security.protocol" "SASL_PLAINTEXT" }}
{{- else if $tls.enabled }}
{{- $_ := set $client "security.protocol" "SSL" }}
{{- end }}
{{- if $sasl.enabled }}
{{- $_ := set $client "sasl.mechanism" $sasl.mechanism }}
{{- end }}
{{- $files := include "livetables.tlsFiles" . | fromYaml }}
{{- range $files.items }}
{{- if eq .path "ca.crt" }}
{{- $_ := set $client "ssl.ca.location" (printf "%s/ca.crt" (include "livetables.tlsDir" $)) }}
{{- else if eq .path "client.crt" }}
{{- $_ := set $client "ssl.certificate.location" (printf "%s/client.crt" (include "livetables.tlsDir" $)) }}
{{- else if eq .path "client.key" }}
{{- $_ := set $client "ssl.key.location" (printf "%s/client.key" (include "livetables.tlsDir" $)) }}
{{- end }}
{{- end }}
{{- toYaml $client }}
{{- end }}

{{/* librdkafka properties that are credentials: never in the ConfigMap. */}}
{{- define "livetables.secretClientKeys" -}}
{{- list "sasl.password" "sasl.username" "ssl.key.password" "ssl.key.pem" "ssl.keystore.password" "ssl.truststore.password" "sasl.oauthbearer.client.secret" "sasl.oauthbearer.config" | toJson }}
{{- end }}

{{/*
The livetables YAML: `config` with the chart's additions. The user's keys win over the
derived security properties; bootstrapServers wins over config.kafka.bootstrap_servers.
*/}}
{{- define "livetables.config" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- $kafka := get $config "kafka" | default dict }}
{{- $userClient := get $kafka "client" | default dict }}
{{- range $key := include "livetables.secretClientKeys" . | fromJsonArray }}
{{- if hasKey $userClient $key }}
{{- fail (printf "config.kafka.client.%s: credentials must not be written into the ConfigMap; use kafka.sasl or kafka.tls (Secrets), or env with valueFrom.secretKeyRef as LIVETABLES_KAFKA__CLIENT__%s" $key $key) }}
{{- end }}
{{- end }}
{{- $client := merge (deepCopy $userClient) (include "livetables.derivedClient" . | fromYaml) }}
{{- $_ := set $kafka "client" $client }}
{{- if .Values.kafka.bootstrapServers }}
{{- $_ := set $kafka "bootstrap_servers" .Values.kafka.bootstrapServers }}
{{- end }}
{{- $_ := set $config "kafka" $kafka }}
{{- $server := get $config "server" | default dict }}
{{- $_ := set $server "host" (get $server "host" | default "0.0.0.0") }}
{{- $_ := set $server "port" (get $server "port" | default 8080) }}
{{- $_ := set $config "server" $server }}
{{- if not (hasKey $config "tables") }}
{{- $_ := set $config "tables" dict }}
{{- end }}
{{- if .Values.persistence.enabled }}
{{- $snapshots := get $config "snapshots" | default dict }}
{{- $_ := set $snapshots "dir" .Values.persistence.mountPath }}
{{- $_ := set $snapshots "interval" (get $snapshots "interval" | default .Values.persistence.interval) }}
{{- $_ := set $config "snapshots" $snapshots }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The claim the snapshots volume mounts. */}}
{{- define "livetables.snapshotClaim" -}}
{{- .Values.persistence.persistentVolumeClaim.existingClaim | default (printf "%s-snapshots" (include "livetables.fullname" .)) }}
{{- end }}

{{/* The container port: config.server.port. */}}
{{- define "livetables.port" -}}
{{- $server := (.Values.config | default dict).server | default dict }}
{{- get $server "port" | default 8080 | int }}
{{- end }}

{{/* Environment: log level and the Kafka credentials from Secrets. */}}
{{- define "livetables.env" -}}
- name: LIVETABLES_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- $sasl := .Values.kafka.sasl }}
{{- if $sasl.enabled }}
{{- $secret := $sasl.existingSecret | default (include "livetables.kafkaSecretName" .) }}
- name: LIVETABLES_KAFKA__CLIENT__sasl.username
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary $sasl.usernameKey "username" (not (empty $sasl.existingSecret)) }}
- name: LIVETABLES_KAFKA__CLIENT__sasl.password
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ ternary $sasl.passwordKey "password" (not (empty $sasl.existingSecret)) }}
{{- end }}
{{- $tls := .Values.kafka.tls }}
{{- if $tls.enabled }}
{{- if and $tls.existingSecret $tls.keyPasswordKey }}
- name: LIVETABLES_KAFKA__CLIENT__ssl.key.password
  valueFrom:
    secretKeyRef:
      name: {{ $tls.existingSecret }}
      key: {{ $tls.keyPasswordKey }}
{{- else if and (not $tls.existingSecret) $tls.keyPassword }}
- name: LIVETABLES_KAFKA__CLIENT__ssl.key.password
  valueFrom:
    secretKeyRef:
      name: {{ include "livetables.kafkaSecretName" . }}
      key: key.password
{{- end }}
{{- end }}
{{- end }}

{{/* Checks that no schema can express. */}}
{{- define "livetables.validate" -}}
{{- /* livetables refuses to start without a table: refuse the install instead of a crash loop. */}}
{{- if not .Values.config.tables }}
{{- fail "config.tables: no tables configured. List the topics to serve under config.tables in your values file, e.g.\n  config:\n    tables:\n      trades:\n        topic: trades\n        schema: {id: string, px: float}\n(helm/livetables/README.md and ci/minimal-values.yaml show more)" }}
{{- end }}
{{- $sasl := .Values.kafka.sasl }}
{{- if and $sasl.enabled (not $sasl.existingSecret) (or (not $sasl.username) (not $sasl.password)) }}
{{- fail "kafka.sasl: set existingSecret (a Secret with the username and password), or username and password" }}
{{- end }}
{{- $tls := .Values.kafka.tls }}
{{- if and $tls.enabled $tls.existingSecret (ne (empty $tls.certKey) (empty $tls.keyKey)) }}
{{- fail "kafka.tls: mutual TLS needs both certKey and keyKey (or neither)" }}
{{- else if and $tls.enabled (not $tls.existingSecret) (ne (empty $tls.cert) (empty $tls.key)) }}
{{- fail "kafka.tls: mutual TLS needs both cert and key (or neither)" }}
{{- end }}
{{- if and .Values.config.snapshots (not .Values.persistence.enabled) }}
{{- fail "config.snapshots: snapshots need a volume (the root filesystem is read-only): set persistence.enabled=true instead; the chart sets the directory" }}
{{- end }}
{{- $pvc := .Values.persistence.persistentVolumeClaim }}
{{- if and .Values.persistence.enabled (eq .Values.persistence.type "persistentVolumeClaim") (not $pvc.existingClaim) (not (has "ReadWriteMany" $pvc.accessModes)) (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail "persistence.persistentVolumeClaim.accessModes: several replicas mount the one claim, so it must be ReadWriteMany (or use persistence.type=emptyDir: a directory per pod)" }}
{{- end }}
{{- if and .Values.httpRoute.enabled (not .Values.httpRoute.parentRefs) }}
{{- fail "httpRoute.parentRefs: name at least one Gateway to attach the route to" }}
{{- end }}
{{- end }}

{{/* A map as k=v, k=v. */}}
{{- define "livetables.inlineLabels" -}}
{{- $pairs := list }}
{{- range $k, $v := . }}{{ $pairs = append $pairs (printf "%s=%v" $k $v) }}{{ end }}
{{- join ", " $pairs }}
{{- end }}
