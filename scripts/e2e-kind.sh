#!/usr/bin/env bash
# Real-cluster end-to-end test on kind: builds the image (Dockerfile), creates a kind cluster,
# deploys deploy/kubernetes/overlays/grpc (server with the gRPC broker and one agent, consumer
# cluster-1, in the same cluster) on a throwaway in-cluster PostgreSQL, and runs the OCM-style
# scenarios with maestro-cli and kubectl:
#
#   create (Update strategy) and update; CreateOnly; ServerSideApply (field manager, a field
#   conflict with another manager, then force); ReadOnly with status feedback; status feedback of
#   a Deployment (WellKnownStatus, JSONPaths); a condition rule (Job, WellKnownConditions
#   Complete); delete with each propagation policy (Foreground, Orphan, SelectivelyOrphan); agent
#   restart and server restart keeping the workloads (same UIDs) and applying updates after them.
#
# Needs docker (with a reachable engine), kind, kubectl and jq; without docker, kind or kubectl
# it prints "skipped: ..." and exits 0. maestro-cli is $MAESTRO_CLI, else built with cargo, else
# copied out of the image. Every wait has a deadline ($E2E_TIMEOUT seconds, default 240).
#
# Environment: KIND_CLUSTER_NAME (default maestro-e2e; must not exist yet), KEEP_CLUSTER=1 keeps
# the cluster (deleted on exit otherwise, also on failure), E2E_IMAGE (default quay.io/maestro-rs/maestro:e2e),
# POSTGRES_IMAGE (default postgres:16), PAUSE_IMAGE (default registry.k8s.io/pause:3.10),
# MAESTRO_CLI, E2E_TIMEOUT.
#
# Usage: scripts/e2e-kind.sh
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "skipped: ${missing[*]} missing (the kind end-to-end test needs docker, kind and kubectl)"
  exit 0
fi
if ! docker info >/dev/null 2>&1; then
  echo "skipped: the Docker engine is not reachable ('docker info' failed)"
  exit 0
fi
command -v jq >/dev/null 2>&1 || { echo "error: jq is missing (the checks read maestro-cli's JSON)" >&2; exit 1; }

CLUSTER=${KIND_CLUSTER_NAME:-maestro-e2e}
IMAGE=${E2E_IMAGE:-quay.io/maestro-rs/maestro:e2e}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-postgres:16}
PAUSE_IMAGE=${PAUSE_IMAGE:-registry.k8s.io/pause:3.10}
TIMEOUT=${E2E_TIMEOUT:-240}
KEEP_CLUSTER=${KEEP_CLUSTER:-0}
CONSUMER=cluster-1 # the consumer of deploy/kubernetes/overlays/grpc/agent
NS=maestro-e2e     # where the works' objects go
[[ $IMAGE == *:* ]] || { echo "error: E2E_IMAGE must carry a tag (name:tag)" >&2; exit 1; }

WORK=$(mktemp -d)
export KUBECONFIG="$WORK/kubeconfig" # kind writes here: the user's kubeconfig is not touched
CREATED=0
PF_PID=
CLI=${MAESTRO_CLI:-}

log() { printf '\n==> %s\n' "$*" >&2; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

stop_port_forward() {
  if [[ -n $PF_PID ]]; then
    kill "$PF_PID" 2>/dev/null || true
    wait "$PF_PID" 2>/dev/null || true
    PF_PID=
  fi
}

cleanup() {
  local rc=$?
  set +e
  stop_port_forward
  if ((rc != 0 && CREATED)); then
    echo "--- diagnostics (exit $rc)" >&2
    kubectl get pods -A -o wide >&2
    kubectl -n maestro logs deployment/maestro --all-containers --tail=80 >&2
    kubectl -n maestro-agent logs deployment/maestro-agent --tail=120 >&2
    kubectl -n "$NS" get all,configmaps >&2
  fi
  if ((CREATED)); then
    if [[ $KEEP_CLUSTER == 1 ]]; then
      echo "kept kind cluster $CLUSTER: 'kind export kubeconfig --name $CLUSTER' to reach it," \
        "'kind delete cluster --name $CLUSTER' to remove it" >&2
    else
      kind delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" >&2
    fi
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

# wait_until DESCRIPTION COMMAND...: runs COMMAND until it succeeds, failing after $TIMEOUT s.
wait_until() {
  local what=$1
  shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "no success within ${TIMEOUT}s: $what"
    sleep 1
  done
}

# --- objects and works -------------------------------------------------------------------------

# The JSON view of a work (the REST object maestro-cli prints with -o json).
work_json() { "$CLI" get --name "$1" --consumer "$CONSUMER" -o json; }

# jq test on a work's JSON; true when the filter yields true.
work_is() { work_json "$1" | jq -e "$2" >/dev/null; }

# A per-manifest condition `type` of manifest `kind`/`name` at the work's current version
# matches the jq test `test` (applied to the condition object).
manifest_condition_is() {
  local work=$1 kind=$2 name=$3 type=$4 test=$5
  work_is "$work" "(.status.ObservedVersion == .version) and ([.status.resourceStatus[]
    | select(.resourceMeta.kind == \"$kind\" and .resourceMeta.name == \"$name\")
    | .conditions[] | select(.type == \"$type\") | $test] | any)"
}

# Feedback value `value_name` of manifest `kind`/`name` matches the jq test `test` (applied to
# the fieldValue object).
feedback_is() {
  local work=$1 kind=$2 name=$3 value_name=$4 test=$5
  work_is "$work" "[.status.resourceStatus[]
    | select(.resourceMeta.kind == \"$kind\" and .resourceMeta.name == \"$name\")
    | .statusFeedback.values[]? | select(.name == \"$value_name\") | .fieldValue | $test] | any"
}

jsonpath() { kubectl -n "$NS" get "$1" -o "jsonpath=$2"; }
cm_value_is() { [[ $(jsonpath "configmap/$1" "{.data.$2}") == "$3" ]]; }
owner_of() { jsonpath "configmap/$1" '{.metadata.annotations.maestro\.open-cluster-management\.io/applied-manifest-work}'; }
owned() { [[ -n $(owner_of "$1") ]]; }
gone() {
  local out
  out=$(kubectl -n "$NS" get "$1" --ignore-not-found -o name) || return 1
  [[ -z $out ]]
}

apply_work() { "$CLI" apply -f "$1" -c "$CONSUMER" --watch --timeout "${TIMEOUT}s"; }
apply_work_nowait() { "$CLI" apply -f "$1" -c "$CONSUMER"; }
delete_work() { "$CLI" delete --name "$1" --consumer "$CONSUMER" --watch --timeout "${TIMEOUT}s"; }

# A ConfigMap manifest (YAML, indented as a manifests item).
cm_manifest() {
  cat <<EOF
      - apiVersion: v1
        kind: ConfigMap
        metadata:
          name: $1
          namespace: $NS
        data:
          $2: "$3"
EOF
}

# A ManifestWork named $1 holding one ConfigMap $2 with $3=$4 and the update strategy YAML $5.
strategy_work() {
  cat <<EOF
apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
metadata:
  name: $1
spec:
  workload:
    manifests:
$(cm_manifest "$2" "$3" "$4")
  manifestConfigs:
    - resourceIdentifier: {group: "", resource: configmaps, name: $2, namespace: $NS}
      updateStrategy: $5
EOF
}

start_port_forward() {
  stop_port_forward
  kubectl -n maestro port-forward --address 127.0.0.1 deployment/maestro :8000 :8090 >"$WORK/pf.log" 2>&1 &
  PF_PID=$!
  wait_until "kubectl port-forward to the server" grep -q -- '-> 8090' "$WORK/pf.log"
  local http grpc
  http=$(awk '$NF == "8000" && $3 ~ /^127\.0\.0\.1:/ {sub(/.*:/, "", $3); print $3; exit}' "$WORK/pf.log")
  grpc=$(awk '$NF == "8090" && $3 ~ /^127\.0\.0\.1:/ {sub(/.*:/, "", $3); print $3; exit}' "$WORK/pf.log")
  [[ -n $http && -n $grpc ]] || fail "cannot read the forwarded ports: $(cat "$WORK/pf.log")"
  export MAESTRO_HTTP_ENDPOINT="http://127.0.0.1:$http" MAESTRO_GRPC_ENDPOINT="127.0.0.1:$grpc"
  wait_until "the REST API through the port-forward" "$CLI" consumer list
}

# --- build and deploy --------------------------------------------------------------------------

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  fail "a kind cluster named $CLUSTER exists already: delete it (kind delete cluster --name $CLUSTER) or set KIND_CLUSTER_NAME"
fi

log "building $IMAGE (Dockerfile)"
docker build -t "$IMAGE" .
docker pull "$POSTGRES_IMAGE"
docker pull "$PAUSE_IMAGE"

if [[ -z $CLI ]]; then
  if command -v cargo >/dev/null 2>&1; then
    log "building maestro-cli"
    cargo build -p maestro-cli --bin maestro-cli
    CLI="${CARGO_TARGET_DIR:-target}/debug/maestro-cli"
  else
    log "copying maestro-cli out of $IMAGE (no cargo here)"
    cid=$(docker create "$IMAGE")
    docker cp "$cid:/usr/local/bin/maestro-cli" "$WORK/maestro-cli"
    docker rm "$cid" >/dev/null
    CLI="$WORK/maestro-cli"
  fi
fi
"$CLI" version

log "creating kind cluster $CLUSTER"
CREATED=1
kind create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait "${TIMEOUT}s"
for image in "$IMAGE" "$POSTGRES_IMAGE" "$PAUSE_IMAGE"; do
  kind load docker-image "$image" --name "$CLUSTER"
done

log "PostgreSQL in namespace maestro-e2e-db (throwaway)"
kubectl apply -f - <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: maestro-e2e-db
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: postgres
  namespace: maestro-e2e-db
spec:
  replicas: 1
  selector:
    matchLabels: {app: postgres}
  template:
    metadata:
      labels: {app: postgres}
    spec:
      containers:
        - name: postgres
          image: $POSTGRES_IMAGE
          imagePullPolicy: IfNotPresent
          env:
            - {name: POSTGRES_USER, value: maestro}
            - {name: POSTGRES_PASSWORD, value: maestro}
            - {name: POSTGRES_DB, value: maestro}
          ports:
            - containerPort: 5432
          readinessProbe:
            exec:
              command: ["pg_isready", "-U", "maestro", "-d", "maestro"]
            periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata:
  name: postgres
  namespace: maestro-e2e-db
spec:
  selector: {app: postgres}
  ports:
    - port: 5432
EOF
kubectl -n maestro-e2e-db rollout status deployment/postgres --timeout="${TIMEOUT}s"

log "deploying deploy/kubernetes/overlays/grpc (without the ServiceMonitor: no Prometheus Operator here)"
kubectl create namespace maestro --dry-run=client -o yaml | kubectl apply -f -
kubectl -n maestro create secret generic maestro-db \
  --from-literal=url=postgres://maestro:maestro@postgres.maestro-e2e-db:5432/maestro
mkdir -p "$WORK/deploy"
overlay=$(realpath --relative-to="$WORK/deploy" deploy/kubernetes/overlays/grpc) # kustomize refuses absolute paths
cat >"$WORK/deploy/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $overlay
patches:
  - patch: |-
      \$patch: delete
      apiVersion: monitoring.coreos.com/v1
      kind: ServiceMonitor
      metadata:
        name: maestro
        namespace: maestro
images:
  - name: quay.io/maestro-rs/maestro
    newName: ${IMAGE%:*}
    newTag: ${IMAGE##*:}
EOF
kubectl apply -k "$WORK/deploy"
kubectl -n maestro rollout status deployment/maestro --timeout="${TIMEOUT}s"
start_port_forward
"$CLI" consumer create "$CONSUMER"
kubectl -n maestro-agent rollout status deployment/maestro-agent --timeout="${TIMEOUT}s"
kubectl create namespace "$NS"

# --- scenarios ---------------------------------------------------------------------------------

log "create: a ConfigMap and a Deployment (Update strategy), with status feedback"
web_work() {
  cat <<EOF
apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
metadata:
  name: e2e-web
spec:
  workload:
    manifests:
$(cm_manifest e2e-web-config greeting "$1")
      - apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: e2e-web
          namespace: $NS
        spec:
          replicas: 1
          selector:
            matchLabels: {app: e2e-web}
          template:
            metadata:
              labels: {app: e2e-web}
            spec:
              containers:
                - name: pause
                  image: $PAUSE_IMAGE
                  imagePullPolicy: IfNotPresent
  manifestConfigs:
    - resourceIdentifier: {group: apps, resource: deployments, name: e2e-web, namespace: $NS}
      feedbackRules:
        - type: WellKnownStatus
        - type: JSONPaths
          jsonPaths:
            - {name: specReplicas, path: .spec.replicas}
EOF
}
web_work hello >"$WORK/web.yaml"
apply_work "$WORK/web.yaml"
cm_value_is e2e-web-config greeting hello || fail "ConfigMap e2e-web-config not created with greeting=hello"
owned e2e-web-config || fail "e2e-web-config carries no owner annotation (no AppliedManifestWork CRD here)"
web_cm_uid=$(jsonpath configmap/e2e-web-config '{.metadata.uid}')
web_dep_uid=$(jsonpath deployment/e2e-web '{.metadata.uid}')
wait_until "feedback ReadyReplicas=1 of e2e-web" feedback_is e2e-web Deployment e2e-web ReadyReplicas '.integer == 1'
feedback_is e2e-web Deployment e2e-web specReplicas '.integer == 1' || fail "feedback specReplicas is not 1"

log "update (Update strategy): the ConfigMap is updated in place"
web_work updated >"$WORK/web.yaml"
apply_work "$WORK/web.yaml"
cm_value_is e2e-web-config greeting updated || fail "greeting not updated"
[[ $(jsonpath configmap/e2e-web-config '{.metadata.uid}') == "$web_cm_uid" ]] || fail "e2e-web-config was recreated"

log "CreateOnly: an existing object keeps its content and gains the owner"
kubectl -n "$NS" create configmap e2e-createonly --from-literal=k=theirs
strategy_work e2e-createonly e2e-createonly k ours '{type: CreateOnly}' >"$WORK/createonly.yaml"
apply_work "$WORK/createonly.yaml"
cm_value_is e2e-createonly k theirs || fail "CreateOnly overwrote e2e-createonly"
owned e2e-createonly || fail "CreateOnly did not add the owner annotation to e2e-createonly"

log "ServerSideApply: field manager work-agent, a field conflict with another manager, then force"
strategy_work e2e-ssa e2e-ssa k one '{type: ServerSideApply}' >"$WORK/ssa.yaml"
apply_work "$WORK/ssa.yaml"
cm_value_is e2e-ssa k one || fail "e2e-ssa not applied"
jsonpath configmap/e2e-ssa '{range .metadata.managedFields[*]}{.manager}/{.operation} {end}' | grep -q 'work-agent/Apply' ||
  fail "e2e-ssa has no Apply entry of field manager work-agent"
kubectl -n "$NS" patch configmap e2e-ssa --type merge -p '{"data":{"k":"edited"}}' --field-manager e2e-editor
strategy_work e2e-ssa e2e-ssa k two '{type: ServerSideApply}' >"$WORK/ssa.yaml"
apply_work_nowait "$WORK/ssa.yaml"
wait_until "the FieldManagerConflict reported on e2e-ssa" manifest_condition_is e2e-ssa ConfigMap e2e-ssa Applied \
  '(.status == "False") and (.message | contains("Apply failed with 1 conflict: conflict with \"e2e-editor\""))'
cm_value_is e2e-ssa k edited || fail "the conflicting apply changed e2e-ssa"
strategy_work e2e-ssa e2e-ssa k two '{type: ServerSideApply, serverSideApply: {force: true}}' >"$WORK/ssa.yaml"
apply_work "$WORK/ssa.yaml"
cm_value_is e2e-ssa k two || fail "the forced apply did not take e2e-ssa's field"

log "ReadOnly: never written, its fields reported as feedback"
kubectl -n "$NS" create configmap e2e-readonly --from-literal=k=theirs
cat >"$WORK/readonly.yaml" <<EOF
$(strategy_work e2e-readonly e2e-readonly k ours '{type: ReadOnly}')
      feedbackRules:
        - type: JSONPaths
          jsonPaths:
            - {name: k, path: .data.k}
EOF
apply_work "$WORK/readonly.yaml"
wait_until "feedback k=theirs of e2e-readonly" feedback_is e2e-readonly ConfigMap e2e-readonly k '.string == "theirs"'
cm_value_is e2e-readonly k theirs || fail "ReadOnly wrote e2e-readonly"
! owned e2e-readonly || fail "ReadOnly marked e2e-readonly as owned"

log "condition rule: a Job with WellKnownConditions Complete"
cat >"$WORK/job.yaml" <<EOF
apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
metadata:
  name: e2e-job
spec:
  workload:
    manifests:
      - apiVersion: batch/v1
        kind: Job
        metadata:
          name: e2e-job
          namespace: $NS
        spec:
          backoffLimit: 0
          template:
            spec:
              restartPolicy: Never
              containers:
                - name: version
                  image: $IMAGE
                  imagePullPolicy: IfNotPresent
                  args: ["--version"]
  manifestConfigs:
    - resourceIdentifier: {group: batch, resource: jobs, name: e2e-job, namespace: $NS}
      conditionRules:
        - {condition: Complete, type: WellKnownConditions}
EOF
apply_work_nowait "$WORK/job.yaml"
"$CLI" wait --name e2e-job --consumer "$CONSUMER" --condition "Applied AND Job:Complete" --timeout "${TIMEOUT}s"
manifest_condition_is e2e-job Job e2e-job Complete '.message == "Job is finished"' || fail "Complete without OCM's message"
delete_work e2e-job

log "delete, propagation policy Foreground: the objects are deleted"
cat >"$WORK/foreground.yaml" <<EOF
apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
metadata:
  name: e2e-foreground
spec:
  deleteOption: {propagationPolicy: Foreground}
  workload:
    manifests:
$(cm_manifest e2e-foreground k v)
EOF
apply_work "$WORK/foreground.yaml"
delete_work e2e-foreground
wait_until "configmap/e2e-foreground deleted" gone configmap/e2e-foreground

log "delete, propagation policy Orphan: the objects stay"
cat >"$WORK/orphan.yaml" <<EOF
apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
metadata:
  name: e2e-orphan
spec:
  deleteOption: {propagationPolicy: Orphan}
  workload:
    manifests:
$(cm_manifest e2e-orphan k v)
EOF
apply_work "$WORK/orphan.yaml"
orphan_uid=$(jsonpath configmap/e2e-orphan '{.metadata.uid}')
delete_work e2e-orphan
[[ $(jsonpath configmap/e2e-orphan '{.metadata.uid}') == "$orphan_uid" ]] || fail "Orphan deleted e2e-orphan"

log "delete, propagation policy SelectivelyOrphan: the rule's object stays, the other goes"
cat >"$WORK/selective.yaml" <<EOF
apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
metadata:
  name: e2e-selective
spec:
  deleteOption:
    propagationPolicy: SelectivelyOrphan
    selectivelyOrphans:
      orphaningRules:
        - {group: "", resource: configmaps, namespace: $NS, name: e2e-keep}
  workload:
    manifests:
$(cm_manifest e2e-keep k v)
$(cm_manifest e2e-drop k v)
EOF
apply_work "$WORK/selective.yaml"
delete_work e2e-selective
wait_until "configmap/e2e-drop deleted" gone configmap/e2e-drop
[[ -n $(jsonpath configmap/e2e-keep '{.metadata.uid}') ]] || fail "SelectivelyOrphan deleted e2e-keep"

log "agent restart: the workloads stay, the new agent applies updates"
kubectl -n maestro-agent rollout restart deployment/maestro-agent
kubectl -n maestro-agent rollout status deployment/maestro-agent --timeout="${TIMEOUT}s"
web_work after-agent-restart >"$WORK/web.yaml"
apply_work "$WORK/web.yaml"
cm_value_is e2e-web-config greeting after-agent-restart || fail "update after the agent restart not applied"
[[ $(jsonpath configmap/e2e-web-config '{.metadata.uid}') == "$web_cm_uid" ]] || fail "agent restart recreated e2e-web-config"
[[ $(jsonpath deployment/e2e-web '{.metadata.uid}') == "$web_dep_uid" ]] || fail "agent restart recreated e2e-web"

log "server restart: the works and workloads stay, updates flow again"
kubectl -n maestro rollout restart deployment/maestro
kubectl -n maestro rollout status deployment/maestro --timeout="${TIMEOUT}s"
start_port_forward # the pod it forwarded to is gone
"$CLI" wait --name e2e-web --consumer "$CONSUMER" --condition "Applied AND Available" --timeout "${TIMEOUT}s"
web_work after-server-restart >"$WORK/web.yaml"
apply_work "$WORK/web.yaml"
cm_value_is e2e-web-config greeting after-server-restart || fail "update after the server restart not applied"
[[ $(jsonpath configmap/e2e-web-config '{.metadata.uid}') == "$web_cm_uid" ]] || fail "server restart recreated e2e-web-config"
[[ $(jsonpath deployment/e2e-web '{.metadata.uid}') == "$web_dep_uid" ]] || fail "server restart recreated e2e-web"

log "delete (no delete option): the work's objects are deleted"
delete_work e2e-web
wait_until "deployment/e2e-web deleted" gone deployment/e2e-web
wait_until "configmap/e2e-web-config deleted" gone configmap/e2e-web-config

log "PASS: every scenario on kind cluster $CLUSTER"
