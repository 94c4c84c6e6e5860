#!/usr/bin/env bash
# contrib/dev-env/down.sh [BASE] [--purge] -- tear down what up.sh started for BASE.
#
# Owns: stopping the containerd, registries and egress guard of BASE (default
# ${VKCRI_DEV_BASE:-/var/tmp/vk-cri-dev}) and removing what their pods left on the
# host. Must not: touch any process that this BASE did not start (PID files and
# process search are matched against cmdlines naming paths in BASE), or delete
# anything outside BASE except the state its own pods left (its bridge + iptables
# guard, its CNI result cache files, its shims' sockets), or need a CRI client.
#
# Steps: kill and delete every task and container of this containerd through `ctr`
# (namespace k8s.io and any other), stop containerd, force-delete any container runc
# still knows under BASE/run/runc, kill leftover shims of this containerd (their
# cmdline carries its socket path), stop the registries and the egress guard,
# unmount everything under BASE (container rootfs, pod /dev/shm, netns bind mounts
# under the state dir), delete the bridge and the iptables FORWARD guard, restore
# net.ipv4.ip_forward, clear the CNI IP leases. Images and registry contents stay,
# so the next up.sh is quick. --purge also deletes BASE.
set -uo pipefail

PURGE=0
BASE=""
for arg in "$@"; do
  case "$arg" in
    --purge) PURGE=1 ;;
    -h | --help) echo "usage: down.sh [BASE] [--purge]"; exit 0 ;;
    -*) echo "down.sh: unknown option $arg" >&2; exit 2 ;;
    *) [[ -z "$BASE" ]] || { echo "usage: down.sh [BASE] [--purge]" >&2; exit 2; }; BASE=$arg ;;
  esac
done
BASE="${BASE:-${VKCRI_DEV_BASE:-/var/tmp/vk-cri-dev}}"
say() { echo "[down.sh] $*" >&2; }
[[ -d "$BASE" ]] || { say "nothing at $BASE"; exit 0; }
BASE="$(cd "$BASE" && pwd -P)"
[[ "$BASE" != / && "$BASE" =~ ^[A-Za-z0-9/._-]+$ ]] || { say "refusing BASE '$BASE'"; exit 2; }
RUN="$BASE/run"; ETC="$BASE/etc"
SOCK="$RUN/containerd.sock"
SHIM_SOCKETS=/run/containerd/s   # containerd 1.6 puts shim sockets there, whatever its state dir

mkdir -p "$RUN"
exec 9>"$RUN/lock"
if ! flock -n 9; then
  say "waiting for another up.sh/down.sh on $BASE"
  flock -w 600 9 || { say "timed out waiting for $RUN/lock"; exit 1; }
fi

# shellcheck disable=SC2001 # (a bracket expression is clearer in sed)
re_quote() { sed 's/[][\\.^$*+?(){}|]/\\&/g' <<<"$1"; }
cmdline_of() { local c; c=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1; printf '%s' "${c% }"; }
# alive PID: the process exists and is not a zombie (PID 1 here may reap late)
alive() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  [[ "${s%% *}" != Z ]]
}

# settings remembered by up.sh (the bridge in particular)
BRIDGE=${VKCRI_BRIDGE:-vkcri0}
b=$(awk -F= '$1 == "BRIDGE" {print $2}' "$BASE/dev-env.conf" 2>/dev/null)
[[ -n "$b" ]] || b=$(awk -F= '$1 == "export VKCRI_CNI_BRIDGE" {print $2}' "$BASE/env.sh" 2>/dev/null)
[[ -n "$b" ]] && BRIDGE=$b
[[ "$BRIDGE" =~ ^[A-Za-z0-9_-]{1,15}$ ]] || { say "bad bridge name '$BRIDGE'"; exit 2; }
NETNAME="vkcri-$BRIDGE"

# daemons of this BASE: name + cmdline regex, as recorded by up.sh
declare -A RE=(
  [registry]="^docker-registry serve $(re_quote "$ETC/registry/public.yml")\$"
  [registry-auth]="^docker-registry serve $(re_quote "$ETC/registry/auth.yml")\$"
  [egress-guard]="^[^ ]*python3[^ ]* $(re_quote "$BASE/bin/egress_guard.py") "
  [containerd]="^containerd --config $(re_quote "$ETC/containerd/config.toml")\$"
)
if [[ -r "$RUN/daemons" ]]; then
  while read -r name re; do [[ -n "${RE[$name]+x}" && -n "$re" ]] && RE[$name]=$re; done <"$RUN/daemons"
fi
# pids_of NAME: the pid in RUN/NAME.pid if its cmdline matches, plus every other
# process whose cmdline matches (orphans whose PID file was lost)
pids_of() {
  local pf="$RUN/$1.pid" pid cl
  {
    if [[ -s "$pf" ]]; then
      pid=$(<"$pf")
      [[ "$pid" =~ ^[0-9]+$ ]] && cl=$(cmdline_of "$pid") && [[ "$cl" =~ ${RE[$1]} ]] && echo "$pid"
    fi
    pgrep -f -- "${RE[$1]}"
  } | sort -un
}
stop_pids() {  # LABEL PID...: TERM, wait up to 10 s, KILL
  local label=$1 pid; shift
  (($#)) || return 0
  say "stopping $label (pid $*)"
  kill -TERM "$@" 2>/dev/null
  for _ in $(seq 1 100); do
    for pid in "$@"; do alive "$pid" && break; pid=""; done
    [[ -z "${pid:-}" ]] && return 0
    sleep 0.1
  done
  say "SIGKILL $label (pid $*)"
  kill -KILL "$@" 2>/dev/null
  for _ in $(seq 1 50); do
    for pid in "$@"; do alive "$pid" && break; pid=""; done
    [[ -z "${pid:-}" ]] && return 0
    sleep 0.1
  done
}

# pod sandboxes this containerd had: for the CNI cache files and shim sockets below
SANDBOXES=()
for d in "$BASE/lib/containerd/io.containerd.grpc.v1.cri/sandboxes"/* \
         "$RUN/containerd/io.containerd.grpc.v1.cri/sandboxes"/*; do
  [[ "${d##*/}" =~ ^[0-9a-f]{64}$ ]] && SANDBOXES+=("${d##*/}")
done

# 1. tasks + containers through ctr, then containerd itself
mapfile -t ctd < <(pids_of containerd)
if ((${#ctd[@]})) && [[ -S "$SOCK" ]] && timeout 10 ctr --address "$SOCK" version >/dev/null 2>&1; then
  for ns in $(timeout 10 ctr --address "$SOCK" namespaces ls -q 2>/dev/null); do
    c=(timeout 30 ctr --address "$SOCK" -n "$ns")
    mapfile -t tasks < <("${c[@]}" tasks ls -q 2>/dev/null)
    for t in "${tasks[@]}"; do "${c[@]}" tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1; done
    for t in "${tasks[@]}"; do "${c[@]}" tasks delete -f "$t" >/dev/null 2>&1; done
    mapfile -t ctrs < <("${c[@]}" containers ls -q 2>/dev/null)
    ((${#ctrs[@]})) && "${c[@]}" containers delete "${ctrs[@]}" >/dev/null 2>&1
    ((${#tasks[@]} + ${#ctrs[@]})) && say "namespace $ns: killed ${#tasks[@]} task(s), deleted ${#ctrs[@]} container(s)"
  done
fi
stop_pids containerd "${ctd[@]}"
rm -f "$RUN/containerd.pid" "$RUN/containerd.stamp"

# 2. containers runc still knows (containerd was dead, or a delete failed)
for root in "$RUN"/runc/*/; do
  [[ -d "$root" ]] || continue
  for id in $(runc --root "$root" list -q 2>/dev/null); do
    say "runc delete --force $id"
    runc --root "$root" delete --force "$id" >/dev/null 2>&1
  done
done

# 3. leftover shims of this containerd: cmdline "... -id ID -address $SOCK"
mapfile -t shims < <(pgrep -f -- "containerd-shim.* -address $(re_quote "$SOCK")( |\$)")
for pid in "${shims[@]}"; do
  cl=$(cmdline_of "$pid") || continue
  [[ "$cl" =~ -id\ ([0-9a-zA-Z._-]+) ]] && SANDBOXES+=("${BASH_REMATCH[1]}")
done
((${#shims[@]})) && { say "killing leftover shims (pid ${shims[*]})"; kill -KILL "${shims[@]}" 2>/dev/null; sleep 0.2; }
# their sockets: /run/containerd/s/sha256("$SOCK/<namespace>/<id>") (containerd 1.6)
for id in "${SANDBOXES[@]}"; do
  for d in "$RUN"/runc/*/ "$RUN/runc/k8s.io/"; do
    ns=$(basename "$d")
    s="$SHIM_SOCKETS/$(printf '%s' "$SOCK/$ns/$id" | sha256sum | cut -c1-64)"
    [[ -S "$s" ]] && rm -f "$s"
  done
done

# 4. registries + egress guard
daemons=()
for name in registry registry-auth egress-guard; do
  mapfile -t p < <(pids_of "$name")
  daemons+=("${p[@]}")
done
stop_pids "registries + egress guard" "${daemons[@]}"
for name in registry registry-auth egress-guard; do rm -f "$RUN/$name.pid" "$RUN/$name.stamp"; done

# 5. unmount everything under BASE, deepest first
left=0
for pass in 1 2 3; do
  mapfile -t mnts < <(awk -v b="$BASE/" 'index($5, b) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  ((${#mnts[@]})) || break
  for m in "${mnts[@]}"; do umount "$m" 2>/dev/null || { ((pass == 3)) && umount -l "$m" 2>/dev/null; }; done
done
left=$(awk -v b="$BASE/" 'index($5, b) == 1' /proc/self/mountinfo | wc -l)
((left)) && say "WARNING: $left mounts still under $BASE"

# 6. network leftovers: bridge, iptables guard, ip_forward, CNI leases + result cache
if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" && say "deleted bridge $BRIDGE"; fi
while iptables -w 5 -C FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP 2>/dev/null; do
  iptables -w 5 -D FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP || break
done
if [[ -s "$RUN/ip_forward.orig" ]]; then
  orig=$(<"$RUN/ip_forward.orig")
  if [[ "$orig" =~ ^[01]$ ]]; then echo "$orig" >/proc/sys/net/ipv4/ip_forward; fi
  rm -f "$RUN/ip_forward.orig"
fi
rm -rf "$BASE/lib/cni/networks/"*
rm -f /var/lib/cni/results/"$NETNAME"-*
for id in "${SANDBOXES[@]}"; do rm -f /var/lib/cni/results/cni-loopback-"$id"-*; done

rm -f "$SOCK" "$SOCK.ttrpc" "$BASE/ready"
if ((PURGE)); then
  if ((left)); then say "not purging $BASE: mounts remain"; exit 1; fi
  exec 9>&-
  rm -rf --one-file-system "$BASE" && say "purged $BASE"
fi
say "down: $BASE"
