{{/* Names ------------------------------------------------------------------------------------------------ */}}

{{- define "gpuquota.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gpuquota.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gpuquota.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gpuquota.labels" -}}
helm.sh/chart: {{ include "gpuquota.chart" . }}
app.kubernetes.io/name: {{ include "gpuquota.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gpuquota
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "webhook"). */}}
{{- define "gpuquota.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpuquota.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "gpuquota.componentLabels" -}}
{{ include "gpuquota.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "gpuquota.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Service account of a component: (dict "ctx" $ "component" "webhook"). */}}
{{- define "gpuquota.serviceAccountName" -}}
{{- $sa := index .ctx.Values .component "serviceAccount" }}
{{- if $sa.create }}
{{- default (printf "%s-%s" (include "gpuquota.fullname" .ctx) .component) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{- define "gpuquota.webhookServiceName" -}}
{{- printf "%s-webhook" (include "gpuquota.fullname" .) }}
{{- end }}

{{- define "gpuquota.tlsSecretName" -}}
{{- printf "%s-webhook-tls" (include "gpuquota.fullname" .) }}
{{- end }}

{{/* Ledger -------------------------------------------------------------------------------------------------- */}}

{{/* "true" when the ledger is PostgreSQL (from an existing Secret or a URL the chart stores). */}}
{{- define "gpuquota.postgres" -}}
{{- if or .Values.ledger.postgresql.existingSecret .Values.ledger.postgresql.url }}true{{ end }}
{{- end }}

{{/* Webhook replicas: explicit, or 2 with PostgreSQL and 1 with SQLite. Refuses an HA install on SQLite. */}}
{{- define "gpuquota.webhookReplicas" -}}
{{- $pg := include "gpuquota.postgres" . }}
{{- $replicas := .Values.webhook.replicas }}
{{- if kindIs "invalid" $replicas }}
{{- $replicas = ternary 2 1 (eq $pg "true") }}
{{- end }}
{{- $replicas = int $replicas }}
{{- if and (gt $replicas 1) (ne $pg "true") }}
{{- fail (printf "gpuquota: webhook.replicas=%d needs a PostgreSQL ledger. SQLite keeps the ledger in one pod's file and supports a single replica only (several replicas would each count against their own copy and overrun the caps). Set ledger.postgresql.existingSecret to a Secret holding the URL under key %q (or ledger.postgresql.url), or set webhook.replicas=1." $replicas .Values.ledger.postgresql.existingSecretKey) }}
{{- end }}
{{- $replicas }}
{{- end }}

{{- define "gpuquota.ledgerSecretName" -}}
{{- default (printf "%s-ledger" (include "gpuquota.fullname" .)) .Values.ledger.postgresql.existingSecret }}
{{- end }}

{{/* The GPUQUOTA_LEDGER variable every ledger user gets; the command line refers to it as $(GPUQUOTA_LEDGER). */}}
{{- define "gpuquota.ledgerEnv" -}}
- name: GPUQUOTA_LEDGER
{{- if include "gpuquota.postgres" . }}
  valueFrom:
    secretKeyRef:
      name: {{ include "gpuquota.ledgerSecretName" . }}
      key: {{ ternary .Values.ledger.postgresql.existingSecretKey "url" (ne .Values.ledger.postgresql.existingSecret "") }}
{{- else }}
  value: {{ printf "sqlite:///%s" .Values.ledger.sqlite.path | quote }}
{{- end }}
{{- end }}

{{- define "gpuquota.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}

{{/* Policy ----------------------------------------------------------------------------------------------------- */}}

{{- define "gpuquota.policyArg" -}}
{{- if .Values.policy.inline }}/etc/gpuquota/policy/profile.yaml{{ else }}{{ .Values.policy.profile }}{{ end }}
{{- end }}

{{- define "gpuquota.configMapName" -}}
{{- printf "%s-config" (include "gpuquota.fullname" .) }}
{{- end }}

{{/* Security ---------------------------------------------------------------------------------------------------- */}}

{{- define "gpuquota.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
fsGroup: {{ .Values.runAsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "gpuquota.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Monitoring --------------------------------------------------------------------------------------------------- */}}

{{/* "true" when Prometheus Operator objects are to be rendered. */}}
{{- define "gpuquota.monitoring" -}}
{{- if and .Values.monitoring.enabled (or .Values.monitoring.force (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) }}true{{ end }}
{{- end }}

{{/* Workload kinds ------------------------------------------------------------------------------------------------
The kinds the webhook judges and where each keeps its pod specs, for the matchConditions: files/workload-kinds.yaml,
generated from the code's kinds (gpuquota.workloads.registry) by scripts/generate-chart-kinds and kept current by a
test. A spec entry is a field path from the object (`path`), or a list (`list`) or map (`map`) of items each holding
a pod spec at `path`. `always`: the object itself may not show its GPUs (a TrainJob's pods come from its runtime), so
every one is sent. `scale`: the kind has a /scale subresource and this is the field it sets (its CRD's
specReplicasPath). */}}
{{- define "gpuquota.workloadKinds" -}}
{{ .Files.Get "files/workload-kinds.yaml" }}
{{- end }}

{{/* CEL ------------------------------------------------------------------------------------------------------------
matchConditions cannot define functions, so the GPU test is spelled out for every place a pod spec sits. Every
step is guarded with has(): an evaluation error under failurePolicy Fail would reject the request. */}}

{{/* `has(a.b) && has(a.b.c)` for root "a" and path [b, c]: (dict "root" "a" "path" (list "b" "c")). */}}
{{- define "gpuquota.cel.guards" -}}
{{- $expr := .root }}
{{- $parts := list }}
{{- range .path }}
{{- $expr = printf "%s.%s" $expr . }}
{{- $parts = append $parts (printf "has(%s)" $expr) }}
{{- end }}
{{- join " && " $parts }}
{{- end }}

{{/* One --gpu-resource / --gpu-device-class flag from a values entry: (dict "flag" "--gpu-resource" "entry" {...}). */}}
{{- define "gpuquota.gpuTableFlag" -}}
{{- $e := .entry }}
{{- $parts := list $e.vendor }}
{{- range $key := list "share" "model" "fraction" }}{{ if hasKey $e $key }}{{ $parts = append $parts (printf "%s=%v" $key (get $e $key)) }}{{ end }}{{ end }}
{{- printf "%s=%s=%s" .flag $e.name (join "," $parts) }}
{{- end }}

{{/* True when container variable `c` asks for a GPU resource: (dict "ctx" $). Names and prefixes: the chart's
lists plus the `extra` entries (a name ending in * is a prefix). */}}
{{- define "gpuquota.cel.containerHasGpu" -}}
{{- $gpu := .ctx.Values.webhook.gpuResources }}
{{- $names := list }}
{{- $prefixes := $gpu.prefixes }}
{{- range $gpu.names }}{{ $names = append $names (printf "'%s'" .) }}{{ end }}
{{- range $gpu.extra }}{{ if hasSuffix "*" .name }}{{ $prefixes = append $prefixes (trimSuffix "*" .name) }}{{ else }}{{ $names = append $names (printf "'%s'" .name) }}{{ end }}{{ end }}
{{- $tests := list }}
{{- if $names }}{{ $tests = append $tests (printf "k in [%s]" (join ", " $names)) }}{{ end }}
{{- range $prefixes }}{{ $tests = append $tests (printf "k.startsWith('%s')" .) }}{{ end }}
{{- $key := join " || " $tests }}
{{- printf "has(c.resources) && ((has(c.resources.limits) && c.resources.limits.exists(k, %s)) || (has(c.resources.requests) && c.resources.requests.exists(k, %s)))" $key $key }}
{{- end }}

{{/* True when the pod spec at CEL expression .spec asks for a GPU: in any container or init container, through
DRA claims (what a claim holds is not in the object: every pod with claims is sent), or, when the spec sits in a
template (or pod) whose metadata is its sibling, through KAI's gpu-fraction / gpu-memory annotations. */}}
{{- define "gpuquota.cel.podSpecHasGpu" -}}
{{- $c := include "gpuquota.cel.containerHasGpu" (dict "ctx" .ctx) }}
{{- $claims := printf "(has(%s.resourceClaims) && size(%s.resourceClaims) > 0)" .spec .spec }}
{{- $kai := "" }}
{{- if hasSuffix ".spec" .spec }}
{{- $meta := printf "%s.metadata" (trimSuffix ".spec" .spec) }}
{{- $kai = printf " || (has(%s) && has(%s.annotations) && ('gpu-fraction' in %s.annotations || 'gpu-memory' in %s.annotations))" $meta $meta $meta $meta }}
{{- end }}
{{- printf "(%s.containers.exists(c, %s) || (has(%s.initContainers) && %s.initContainers.exists(c, %s)) || %s%s)" .spec $c .spec .spec $c $claims $kai }}
{{- end }}

{{/* True when one spec entry of a kind (see gpuquota.workloadKinds) asks for a GPU: (dict "ctx" $ "root" "object" "entry" …). */}}
{{- define "gpuquota.cel.entryHasGpu" -}}
{{- $e := .entry }}
{{- if hasKey $e "list" }}
{{- $items := printf "%s.%s" .root (join "." $e.list) }}
{{- $spec := printf "i.%s" (join "." $e.path) }}
{{- printf "(%s && %s.exists(i, %s && %s))" (include "gpuquota.cel.guards" (dict "root" .root "path" $e.list)) $items (include "gpuquota.cel.guards" (dict "root" "i" "path" $e.path)) (include "gpuquota.cel.podSpecHasGpu" (dict "ctx" .ctx "spec" $spec)) }}
{{- else if hasKey $e "map" }}
{{- $items := printf "%s.%s" .root (join "." $e.map) }}
{{- $item := printf "%s[r]" $items }}
{{- $spec := printf "%s.%s" $item (join "." $e.path) }}
{{- printf "(%s && %s.exists(r, %s && %s))" (include "gpuquota.cel.guards" (dict "root" .root "path" $e.map)) $items (include "gpuquota.cel.guards" (dict "root" $item "path" $e.path)) (include "gpuquota.cel.podSpecHasGpu" (dict "ctx" .ctx "spec" $spec)) }}
{{- else }}
{{- $spec := printf "%s.%s" .root (join "." $e.path) }}
{{- printf "(%s && %s)" (include "gpuquota.cel.guards" (dict "root" .root "path" $e.path)) (include "gpuquota.cel.podSpecHasGpu" (dict "ctx" .ctx "spec" $spec)) }}
{{- end }}
{{- end }}

{{/* True when an object (CEL variable .root) of kind .kind asks for a GPU anywhere. */}}
{{- define "gpuquota.cel.kindHasGpu" -}}
{{- if .kind.always }}true{{ else }}
{{- $parts := list }}
{{- range .kind.specs }}
{{- $parts = append $parts (include "gpuquota.cel.entryHasGpu" (dict "ctx" $.ctx "root" $.root "entry" .)) }}
{{- end }}
{{- join " || " $parts }}
{{- end }}
{{- end }}

{{/* One matchCondition per kind: `request.kind is not K || K's object asks for a GPU`. They are ANDed by the API
server, so exactly the condition of the request's own kind decides. .roots lists the objects to test, {name, when}: any may match; `when` guards one that can be null. */}}
{{- define "gpuquota.cel.kindConditions" -}}
{{- range .kinds }}
{{- $kind := . }}
{{- $tests := list }}
{{- range $.roots }}
{{- $test := include "gpuquota.cel.kindHasGpu" (dict "ctx" $.ctx "root" .name "kind" $kind) }}
{{- if .when }}{{ $test = printf "(%s && (%s))" .when $test }}{{ end }}
{{- $tests = append $tests $test }}
{{- end }}
- name: {{ printf "%s-requests-gpus" (default (lower $kind.kind) $kind.name) }}
  expression: {{ printf "request.kind.group != '%s' || request.kind.kind != '%s' || %s" $kind.group $kind.kind (join " || " $tests) | quote }}
{{- end }}
{{- end }}

{{/* TLS ------------------------------------------------------------------------------------------------------------
The chart-generated CA and serving certificate (cert-manager off), as a dict {ca, crt, key} of PEM strings. An
existing Secret is reused, so upgrades keep the certificate the API server trusts. Several templates need the same
values (Secret, webhook caBundle, the pods' checksum), so the first call stores them for the others. */}}
{{- define "gpuquota.generatedTLS" -}}
{{- if not (hasKey .Values "__generatedTLS") }}
{{- $name := include "gpuquota.tlsSecretName" . }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name }}
{{- $tls := dict }}
{{- if and $existing $existing.data (index $existing.data "ca.crt") (index $existing.data "tls.crt") (index $existing.data "tls.key") }}
{{- $tls = dict "ca" (index $existing.data "ca.crt" | b64dec) "crt" (index $existing.data "tls.crt" | b64dec) "key" (index $existing.data "tls.key" | b64dec) }}
{{- else }}
{{- $svc := include "gpuquota.webhookServiceName" . }}
{{- $ns := .Release.Namespace }}
{{- $days := int .Values.tls.generatedValidityDays }}
{{- $ca := genCA (printf "%s-ca" (include "gpuquota.fullname" .)) $days }}
{{- $dns := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc $ns) nil $dns $days $ca }}
{{- $tls = dict "ca" $ca.Cert "crt" $cert.Cert "key" $cert.Key }}
{{- end }}
{{- $_ := set .Values "__generatedTLS" $tls }}
{{- end }}
{{- toYaml (get .Values "__generatedTLS") }}
{{- end }}

{{/* The reconciler's command line; POD_NAME (its identity on the Lease) and POD_NAMESPACE come from podEnv. */}}
{{- define "gpuquota.reconcilerArgs" -}}
{{- $election := .Values.reconciler.leaderElection -}}
- reconcile
- --ledger=$(GPUQUOTA_LEDGER)
- --policy={{ include "gpuquota.policyArg" . }}
{{- with .Values.clusterName }}
- --cluster-name={{ . }}
{{- end }}
- --metrics-port={{ .Values.reconciler.metricsPort }}
{{- if $election.enabled }}
{{- if not (and (lt (float64 $election.retryPeriod) (float64 $election.renewDeadline)) (lt (float64 $election.renewDeadline) (float64 $election.leaseDuration))) }}
{{- fail "reconciler.leaderElection needs retryPeriod < renewDeadline < leaseDuration: a leader must stop before anyone may take its Lease" }}
{{- end }}
- --leader-elect
- --lease-name={{ include "gpuquota.fullname" . }}-reconciler
- --lease-namespace=$(POD_NAMESPACE)
- --lease-duration={{ $election.leaseDuration }}
- --renew-deadline={{ $election.renewDeadline }}
- --retry-period={{ $election.retryPeriod }}
{{- else }}
- --no-leader-elect
{{- end }}
{{- with .Values.reconciler.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "gpuquota.reconcilerPorts" -}}
- name: recon-metrics
  containerPort: {{ .Values.reconciler.metricsPort }}
  protocol: TCP
{{- end }}

{{/* The reconciler's probes on its metrics port (gpuquota.reconcile.health): /healthz fails when its work loop has not
turned for --stuck-after (default 4 intervals, at least 120 s), /readyz while it cannot use the ledger — a follower
that is not leading is ready. The readiness probe is left out for the container inside the webhook pod (SQLite): a
pod is ready only when all its containers are, so it would take the webhook out of its Service, and refuse every GPU
workload, over a reconciler-only problem; the webhook's own /readyz already checks that SQLite file. */}}
{{- define "gpuquota.reconcilerProbes" -}}
startupProbe:
  httpGet: {path: /healthz, port: recon-metrics}
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet: {path: /healthz, port: recon-metrics}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
{{- if .readiness }}
readinessProbe:
  httpGet: {path: /readyz, port: recon-metrics}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}
{{- end }}

{{/* The Kueue check controller's container (docs/kueue.md): in every webhook pod, on the webhook's ledger, policy,
tenants and service account; one replica works at a time (the Lease). Its probes mirror the reconciler's: no
readiness probe, so a check-only problem never takes the webhook out of its Service. */}}
{{- define "gpuquota.kueueCheckContainer" -}}
- name: kueue-check
  image: {{ include "gpuquota.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    - kueue-check
    - --ledger=$(GPUQUOTA_LEDGER)
    - --policy={{ include "gpuquota.policyArg" . }}
    - --tenants=/etc/gpuquota/config/tenants.yaml
    {{- if .Values.catalog.local }}
    - --catalog=/etc/gpuquota/config/catalog.yaml
    {{- end }}
    {{- range .Values.webhook.gpuResources.extra }}
    - {{ include "gpuquota.gpuTableFlag" (dict "flag" "--gpu-resource" "entry" .) | quote }}
    {{- end }}
    {{- range .Values.webhook.gpuResources.deviceClasses }}
    - {{ include "gpuquota.gpuTableFlag" (dict "flag" "--gpu-device-class" "entry" .) | quote }}
    {{- end }}
    {{- with .Values.clusterName }}
    - --cluster-name={{ . }}
    {{- end }}
    - --interval={{ .Values.kueue.interval }}
    - --metrics-port={{ .Values.kueue.metricsPort }}
    {{- if .Values.kueue.leaderElection.enabled }}
    - --leader-elect
    - --lease-name={{ include "gpuquota.fullname" . }}-kueue-check
    - --lease-namespace=$(POD_NAMESPACE)
    {{- else }}
    - --no-leader-elect
    {{- end }}
    {{- with .Values.kueue.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: kueue-metrics
      containerPort: {{ .Values.kueue.metricsPort }}
      protocol: TCP
  startupProbe:
    httpGet: {path: /healthz, port: kueue-metrics}
    periodSeconds: 2
    failureThreshold: 30
  livenessProbe:
    httpGet: {path: /healthz, port: kueue-metrics}
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 3
  env:
    {{- include "gpuquota.podEnv" . | nindent 4 }}
    {{- include "gpuquota.ledgerEnv" . | nindent 4 }}
    {{- with .Values.kueue.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  resources:
    {{- toYaml .Values.kueue.resources | nindent 4 }}
  securityContext:
    {{- include "gpuquota.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - {name: config, mountPath: /etc/gpuquota/config, readOnly: true}
    {{- if .Values.policy.inline }}
    - {name: policy, mountPath: /etc/gpuquota/policy, readOnly: true}
    {{- end }}
    - {name: tmp, mountPath: /tmp}
    {{- if ne (include "gpuquota.postgres" .) "true" }}
    - {name: state, mountPath: /var/lib/gpuquota}
    {{- end }}
{{- end }}
