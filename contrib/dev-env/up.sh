#!/usr/bin/env bash
# contrib/dev-env/up.sh [BASE] -- bring up vk-cri's private containerd test environment.
#
# Owns: everything under BASE (default ${VKCRI_DEV_BASE:-/var/tmp/vk-cri-dev}) and the
# processes it starts there: a containerd with the CRI plugin (+ runc, CNI bridge),
# two loopback OCI registries (open + htpasswd basic auth) and a deny-all egress guard
# that containerd uses as HTTP(S)_PROXY. Must not: touch the system's containerd or
# any process it did not start (PID files are checked against the cmdline), connect
# anywhere but 127.0.0.0/8, or need anything but this directory and Debian packages.
#
# Idempotent: installs missing Debian packages, builds the three images if their
# inputs changed, (re)starts only the daemons that are dead or whose configuration
# changed, pushes images the registries lack, imports busybox/pause into containerd
# (namespace k8s.io) if missing, writes BASE/env.sh and BASE/ready. A rerun against a
# healthy BASE changes nothing and takes about a second.
# Last line of stdout: the containerd socket path. Everything else goes to stderr.
#
# Knobs (environment; the ones marked * are remembered in BASE/dev-env.conf, so
# later runs and down.sh keep them without repeating them):
#   VKCRI_REGISTRY_PORT* (5000)  VKCRI_AUTH_REGISTRY_PORT* (5001)  VKCRI_EGRESS_GUARD_PORT* (5009)
#   VKCRI_BRIDGE* (vkcri0)  VKCRI_POD_SUBNET* (10.88.0.0/16; exported by env.sh as VKCRI_CNI_SUBNET)
#   VKCRI_AUTH_USER* (vkcri)  VKCRI_AUTH_PASS* (vkcri-secret)
#   VKCRI_SNAPSHOTTER* (probed once: overlayfs if an overlay mount works, else native)
#   VKCRI_LOG_LEVEL (containerd's, info)
# Input and output names are kept apart (env.sh exports VKCRI_CNI_SUBNET, VKCRI_CNI_BRIDGE,
# ...), except VKCRI_DEV_BASE and the credentials: a shell that sourced an env.sh
# targets that BASE by default.
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE="${1:-${VKCRI_DEV_BASE:-/var/tmp/vk-cri-dev}}"
[[ "$BASE" == -* ]] && { echo "usage: up.sh [BASE]" >&2; exit 2; }
mkdir -p "$BASE"
BASE="$(cd "$BASE" && pwd -P)"
[[ "$BASE" != / && "$BASE" =~ ^[A-Za-z0-9/._-]+$ ]] \
  || { echo "up.sh: BASE must not be / and may only hold [A-Za-z0-9/._-]: '$BASE'" >&2; exit 2; }

RUN="$BASE/run"; LOGD="$BASE/log"; ETC="$BASE/etc"; IMGDIR="$BASE/images"
SOCK="$RUN/containerd.sock"
CFG="$ETC/containerd/config.toml"
CERTS_D="$ETC/containerd/certs.d"
CNI_CONF="$ETC/cni/net.d/10-vkcri.conflist"
SETTINGS="$BASE/dev-env.conf"
GUARD_PY="$BASE/bin/egress_guard.py"
PY=/usr/bin/python3
CNI_BIN=/usr/lib/cni
NS=k8s.io
DPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PAUSE_LOCAL=localhost/vk-cri/pause:1
BUSYBOX_LOCAL=localhost/vk-cri/busybox:1
PULLTEST_LOCAL=localhost/vk-cri/pulltest:1

t0=${EPOCHREALTIME/./}
log() {
  local us=$((${EPOCHREALTIME/./} - t0))
  printf '[up.sh %3d.%01ds] %s\n' $((us / 1000000)) $((us / 100000 % 10)) "$*" >&2
}
die() { echo "up.sh: error: $*" >&2; exit 1; }
die_log() {  # LOGFILE MESSAGE...
  local f=$1; shift
  echo "up.sh: error: $*" >&2
  if [[ -s "$f" ]]; then echo "---- last lines of $f:" >&2; tail -n 25 "$f" >&2; echo "----" >&2; fi
  exit 1
}
trap 'echo "up.sh: error: \"$BASH_COMMAND\" failed (exit $?) at line $LINENO" >&2' ERR
trap 'rc=$?; ((rc == 0)) || rm -f "$BASE/ready"; exit $rc' EXIT

((${#SOCK} + 6 < 100)) || die "BASE path too long for a unix socket: $SOCK.ttrpc"
mkdir -p "$RUN" "$LOGD"
# one up.sh/down.sh at a time per BASE (fd 9 is closed in every daemon we start)
exec 9>"$RUN/lock"
if ! flock -n 9; then
  log "waiting for another up.sh/down.sh on $BASE"
  flock -w 600 9 || die "timed out waiting for the lock $RUN/lock"
fi

# ------------------------------------------------------------------ settings
declare -A saved=()
if [[ -r "$SETTINGS" ]]; then
  while IFS='=' read -r k v; do [[ "$k" =~ ^[A-Z_]+$ ]] && saved[$k]=$v; done <"$SETTINGS"
elif [[ -r "$BASE/env.sh" ]]; then
  # settings file lost: recover them from the env.sh of the last successful run
  while IFS='=' read -r k v; do
    case "$k" in
      "export VKCRI_REGISTRY") saved[REGISTRY_PORT]=${v##*:} ;;
      "export VKCRI_AUTH_REGISTRY") saved[AUTH_REGISTRY_PORT]=${v##*:} ;;
      "export VKCRI_EGRESS_GUARD") saved[EGRESS_GUARD_PORT]=${v##*:} ;;
      "export VKCRI_CNI_BRIDGE") saved[BRIDGE]=$v ;;
      "export VKCRI_CNI_SUBNET") saved[CNI_SUBNET]=$v ;;
      "export VKCRI_AUTH_USER") saved[AUTH_USER]=$v ;;
      "export VKCRI_AUTH_PASS") saved[AUTH_PASS]=$v ;;
    esac
  done <"$BASE/env.sh"
fi
pick() {  # NAME DEFAULT: $VKCRI_NAME, else the value remembered for BASE, else DEFAULT
  local e="VKCRI_$1"
  printf '%s' "${!e:-${saved[$1]:-$2}}"
}
REG_PORT=$(pick REGISTRY_PORT 5000)
AREG_PORT=$(pick AUTH_REGISTRY_PORT 5001)
GUARD_PORT=$(pick EGRESS_GUARD_PORT 5009)
BRIDGE=$(pick BRIDGE vkcri0)
SUBNET=${VKCRI_POD_SUBNET:-${saved[CNI_SUBNET]:-10.88.0.0/16}}
AUTH_USER=$(pick AUTH_USER vkcri)
AUTH_PASS=$(pick AUTH_PASS vkcri-secret)
SNAP=$(pick SNAPSHOTTER "")
LOG_LEVEL=${VKCRI_LOG_LEVEL:-info}
[[ "$LOG_LEVEL" =~ ^(trace|debug|info|warn|error)$ ]] || die "VKCRI_LOG_LEVEL must be trace, debug, info, warn or error"
for p in "$REG_PORT" "$AREG_PORT" "$GUARD_PORT"; do
  if ! [[ "$p" =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then die "bad port '$p'"; fi
done
[[ "$REG_PORT" != "$AREG_PORT" && "$REG_PORT" != "$GUARD_PORT" && "$AREG_PORT" != "$GUARD_PORT" ]] \
  || die "registry, auth registry and egress guard ports must differ"
[[ "$BRIDGE" =~ ^[A-Za-z0-9_-]{1,15}$ ]] || die "bad bridge name '$BRIDGE' (1-15 of [A-Za-z0-9_-])"
[[ "$SUBNET" =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/[0-9]+$ ]] || die "bad CNI subnet '$SUBNET'"
[[ "$AUTH_USER" =~ ^[A-Za-z0-9._-]+$ && "$AUTH_PASS" =~ ^[A-Za-z0-9._-]+$ ]] \
  || die "VKCRI_AUTH_USER/VKCRI_AUTH_PASS: use only [A-Za-z0-9._-]"
[[ -z "$SNAP" || "$SNAP" =~ ^(overlayfs|native)$ ]] || die "VKCRI_SNAPSHOTTER must be overlayfs or native"
REG="127.0.0.1:$REG_PORT"        # open, plain HTTP
AREG="127.0.0.1:$AREG_PORT"      # htpasswd basic auth, plain HTTP
GUARD="127.0.0.1:$GUARD_PORT"    # containerd's HTTP(S)_PROXY: refuses everything
SANDBOX_IMAGE=$REG/vk-cri/pause:1   # pre-tagged in containerd: no pull needed
NETNAME="vkcri-$BRIDGE"          # CNI network name (libcni caches results under this name)
log "BASE=$BASE registries $REG $AREG, egress guard $GUARD, bridge $BRIDGE $SUBNET"

# ------------------------------------------------------------------ helpers
# put FILE: write stdin to FILE unless FILE already holds exactly that
put() {
  local tmp="$1.tmp.$$"
  cat >"$tmp"
  if [[ -f "$1" ]] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}
hash16() { sha256sum | cut -c1-16; }
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

# daemon_pid NAME REGEX: print the pid of our daemon NAME: the one in RUN/NAME.pid if
# its cmdline matches REGEX, else the oldest process whose cmdline matches (an orphan
# whose PID file was lost; REGEX names a path in BASE, so it is one of ours) and
# re-record it. Fails if there is none.
daemon_pid() {
  local pf="$RUN/$1.pid" pid cl
  if [[ -s "$pf" ]]; then
    pid=$(<"$pf")
    if [[ "$pid" =~ ^[0-9]+$ ]] && cl=$(cmdline_of "$pid") && [[ "$cl" =~ $2 ]]; then
      echo "$pid"; return 0
    fi
  fi
  pid=$(pgrep -o -f -- "$2") || { rm -f "$pf" "$RUN/$1.stamp"; return 1; }
  echo "$pid" >"$pf"
  rm -f "$RUN/$1.stamp"   # unknown configuration: treated as changed
  echo "$pid"
}
stop_daemon() {  # NAME REGEX
  local pid i
  pid=$(daemon_pid "$1" "$2") || return 0
  log "stopping $1 (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    log "$1 (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
  fi
  rm -f "$RUN/$1.pid" "$RUN/$1.stamp"
}
# port_owner PORT: "pid=N (cmdline)" of whatever listens on TCP PORT, empty if nothing
port_owner() {
  local line pid
  line=$(ss -Hltnp "sport = :$1" 2>/dev/null | head -n1) || true
  [[ -n "$line" ]] || return 0
  pid=$(grep -o 'pid=[0-9]*' <<<"$line" | head -n1 | cut -d= -f2) || true
  if [[ -n "$pid" ]]; then echo "pid $pid ($(cmdline_of "$pid" || echo '?'))"; else echo "an unknown process"; fi
}
# start_daemon NAME STAMP PORT CMD...: start CMD in its own session with a clean
# environment, log to LOGD/NAME.log, PID file RUN/NAME.pid (the pid that execs CMD).
start_daemon() {
  local name=$1 stamp=$2 port=$3 owner lf="$LOGD/$1.log" pf="$RUN/$1.pid" i
  shift 3
  if [[ -n "$port" ]]; then
    owner=$(port_owner "$port")
    [[ -z "$owner" ]] || die "cannot start $name: port $port is in use by $owner, which this BASE did not start; stop it or choose another port (see README.md)"
  fi
  if [[ -f "$lf" ]] && (($(stat -c %s "$lf") > 64 * 1024 * 1024)); then mv -f "$lf" "$lf.1"; fi
  rm -f "$pf"
  printf '\n==== %s up.sh: starting %s\n' "$(date -u +%FT%TZ)" "$*" >>"$lf"
  # shellcheck disable=SC2016 # (expanded by the inner bash)
  PIDF="$pf" setsid bash -c 'for fd in /proc/$$/fd/*; do fd=${fd##*/}; ((fd > 2)) && eval "exec $fd>&-"; done
                             echo $$ >"$PIDF"; exec "$@"' _ "$@" >>"$lf" 2>&1 </dev/null &
  for i in $(seq 1 100); do [[ -s "$pf" ]] && break; sleep 0.02; done
  [[ -s "$pf" ]] || die_log "$lf" "$name did not start"
  echo "$stamp" >"$RUN/$name.stamp"
  log "started $name (pid $(<"$pf"))"
}
# ensure_daemon NAME REGEX STAMP PORT CMD...: keep a running NAME whose STAMP (hash of
# its configuration) is unchanged, restart it if the STAMP changed, start it if dead.
# Sets REUSED=1 when the running one was kept.
ensure_daemon() {
  local name=$1 re=$2 stamp=$3 port=$4 pid
  shift 4
  REUSED=0
  if pid=$(daemon_pid "$name" "$re"); then
    if [[ "$(cat "$RUN/$name.stamp" 2>/dev/null)" == "$stamp" ]]; then
      REUSED=1; return 0
    fi
    log "$name: configuration changed (or unknown), restarting"
    stop_daemon "$name" "$re"
  fi
  start_daemon "$name" "$stamp" "$port" "$@"
}
# http_ready NAME URL SECONDS: wait until URL answers 200 or 401 while NAME lives
http_ready() {
  local code=000 i pid n=$(($3 * 20))
  for ((i = 0; i < n; i++)); do
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' --noproxy '*' "$2" 2>/dev/null) || true
    [[ "$code" =~ ^(200|401)$ ]] && return 0
    pid=$(cat "$RUN/$1.pid" 2>/dev/null) || true
    [[ -n "$pid" ]] && alive "$pid" || return 1
    sleep 0.05
  done
  return 1
}

# ---------------------------------------------------------------- 1. packages
PKGS=(containerd runc containernetworking-plugins iptables iproute2 procps util-linux curl
      docker-registry skopeo apache2-utils python3 gcc libc6-dev busybox-static)
mapfile -t have_pkgs < <(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PKGS[@]}" 2>/dev/null \
                         | awk '$2 ~ /^ii/ {print $1}' || true)
missing=()
for p in "${PKGS[@]}"; do [[ " ${have_pkgs[*]} " == *" $p "* ]] || missing+=("$p"); done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  # keep the packaged services (system containerd, docker-registry on :5000) from being
  # started by the install; an existing policy-rc.d is left as it is
  prc=/usr/sbin/policy-rc.d; own_prc=0
  if [[ ! -e "$prc" ]]; then printf '#!/bin/sh\nexit 101\n' >"$prc"; chmod 755 "$prc"; own_prc=1; fi
  rc=0
  {
    apt-get -o DPkg::Lock::Timeout=300 update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends "${missing[@]}"
  } >"$LOGD/apt.log" 2>&1 || rc=$?
  ((own_prc)) && rm -f "$prc"
  ((rc == 0)) || die_log "$LOGD/apt.log" "apt-get failed (exit $rc) installing ${missing[*]}"
fi
for c in containerd ctr runc containerd-shim-runc-v2 docker-registry skopeo htpasswd gcc curl iptables ss; do
  command -v "$c" >/dev/null || die "$c not found after installing packages"
done
[[ -x "$CNI_BIN/bridge" && -x "$CNI_BIN/host-local" && -x "$CNI_BIN/loopback" ]] || die "CNI plugins missing in $CNI_BIN"
[[ -x /bin/busybox ]] || die "/bin/busybox (busybox-static) missing"

mkdir -p "$ETC"/{containerd,cni/net.d,registry} "$BASE"/{lib/containerd,lib/cni/networks,opt,tmp,bin} \
         "$IMGDIR" "$BASE/registry"/{public,auth}

# ------------------------------------------------------------------ 2. images
inputs=$( { sha256sum "$HERE/images/build_images.py" "$HERE/images/pause.c" /bin/busybox | cut -d' ' -f1
            gcc -dumpfullversion; } | hash16)
if [[ "$(cat "$IMGDIR/inputs" 2>/dev/null)" != "$inputs" || ! -s "$IMGDIR/digests.env" \
      || ! -s "$IMGDIR/busybox.oci.tar" || ! -s "$IMGDIR/pause.oci.tar" || ! -s "$IMGDIR/pulltest.oci.tar" ]]; then
  log "building images"
  rm -f "$IMGDIR/inputs"
  gcc -Os -static -s -o "$IMGDIR/pause" "$HERE/images/pause.c" 2>"$LOGD/build.log" \
    || die_log "$LOGD/build.log" "compiling images/pause.c failed"
  "$PY" "$HERE/images/build_images.py" --out "$IMGDIR" --busybox /bin/busybox --pause-bin "$IMGDIR/pause" \
    --pause-ref "$PAUSE_LOCAL" --busybox-ref "$BUSYBOX_LOCAL" --pulltest-ref "$PULLTEST_LOCAL" \
    >/dev/null 2>>"$LOGD/build.log" || die_log "$LOGD/build.log" "build_images.py failed"
  echo "$inputs" >"$IMGDIR/inputs"
fi
# shellcheck disable=SC1091
source "$IMGDIR/digests.env"   # {BUSYBOX,PAUSE,PULLTEST}_{MANIFEST,ID}

# -------------------------------------------------- 3. registries + egress guard
# Debian's docker-registry (distribution v2) run by hand with our own config; plain
# HTTP on loopback only. bcrypt cost 4: the registry checks the hash on every request.
htp="$ETC/registry/htpasswd"
if ! htpasswd -vb "$htp" "$AUTH_USER" "$AUTH_PASS" >/dev/null 2>&1; then
  htpasswd -Bbc -C 4 "$htp" "$AUTH_USER" "$AUTH_PASS" 2>/dev/null
fi
registry_cfg() {  # name addr [auth]
  cat <<EOF
# generated by contrib/dev-env/up.sh
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $BASE/registry/$1
  delete:
    enabled: true
  redirect:
    disable: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $2
  secret: vk-cri-local-registry-$1
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
EOF
  if [[ "${3:-}" == auth ]]; then
    cat <<EOF
auth:
  htpasswd:
    realm: vk-cri-auth-registry
    path: $htp
EOF
  fi
}
registry_cfg public "$REG" | put "$ETC/registry/public.yml"
registry_cfg auth "$AREG" auth | put "$ETC/registry/auth.yml"
put "$GUARD_PY" <"$HERE/egress_guard.py"
chmod 0755 "$GUARD_PY"

RE_REGISTRY="^docker-registry serve $(re_quote "$ETC/registry/public.yml")\$"
RE_REGISTRY_AUTH="^docker-registry serve $(re_quote "$ETC/registry/auth.yml")\$"
RE_GUARD="^[^ ]*python3[^ ]* $(re_quote "$GUARD_PY") "
RE_CONTAINERD="^containerd --config $(re_quote "$CFG")\$"
st_reg=$(cat "$ETC/registry/public.yml" "$htp" | hash16)
st_areg=$(cat "$ETC/registry/auth.yml" "$htp" | hash16)
st_guard=$( { cat "$GUARD_PY"; echo "$GUARD"; } | hash16)
# what down.sh stops for this BASE (name, cmdline regex); written before anything starts
printf '%s %s\n' registry "$RE_REGISTRY" registry-auth "$RE_REGISTRY_AUTH" egress-guard "$RE_GUARD" \
  containerd "$RE_CONTAINERD" | put "$RUN/daemons"

# name|regex|stamp|port|health url|command
DAEMONS=(
  "registry|$RE_REGISTRY|$st_reg|$REG_PORT|http://$REG/v2/|docker-registry serve $ETC/registry/public.yml"
  "registry-auth|$RE_REGISTRY_AUTH|$st_areg|$AREG_PORT|http://$AREG/v2/|docker-registry serve $ETC/registry/auth.yml"
  "egress-guard|$RE_GUARD|$st_guard|$GUARD_PORT|http://$GUARD/healthz|$PY $GUARD_PY --listen $GUARD --log $LOGD/egress-guard.jsonl"
)
for spec in "${DAEMONS[@]}"; do
  IFS='|' read -r name re stamp port url cmd <<<"$spec"
  read -ra argv <<<"$cmd"
  ensure_daemon "$name" "$re" "$stamp" "$port" env -i PATH="$DPATH" "${argv[@]}"
  if ! http_ready "$name" "$url" $((REUSED ? 3 : 10)); then
    if ((REUSED)); then
      log "$name is running but not answering on $url: restarting it"
      stop_daemon "$name" "$re"
      start_daemon "$name" "$stamp" "$port" env -i PATH="$DPATH" "${argv[@]}"
      http_ready "$name" "$url" 10 && continue
    fi
    die_log "$LOGD/$name.log" "$name is not answering on $url"
  fi
done

# push (skopeo --preserve-digests: the registries hold exactly the manifests of the
# OCI tarballs) whatever is missing or different. Image|registry|repo:tag
PUSH=(
  "busybox|$REG|vk-cri/busybox:1"
  "pause|$REG|vk-cri/pause:1"
  "pulltest|$REG|vk-cri/pulltest:1"
  "busybox|$REG|library/busybox:1.36"     # = docker.io/library/busybox:1.36 = busybox:1.36
  "busybox|$REG|library/busybox:latest"   # = busybox
  "pause|$REG|pause:3.9"                  # = registry.k8s.io/pause:3.9
  "busybox|$AREG|vk-cri/busybox:1"
  "pause|$AREG|vk-cri/pause:1"
  "pulltest|$AREG|vk-cri/pulltest:1"
)
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' | put "$ETC/skopeo-policy.json"
declare -A in_reg=()
for addr in "$REG" "$AREG"; do
  args=()
  for spec in "${PUSH[@]}"; do
    IFS='|' read -r img a ref <<<"$spec"
    [[ "$a" == "$addr" ]] && args+=(-o /dev/null "http://$addr/v2/${ref%:*}/manifests/${ref##*:}")
  done
  cu=()
  [[ "$addr" == "$AREG" ]] && cu=(-u "$AUTH_USER:$AUTH_PASS")
  while read -r url dig; do
    in_reg[$url]=$dig
  done < <(curl -s -I --noproxy '*' -m 10 "${cu[@]}" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
             -w '%{url_effective} %header{docker-content-digest}\n' "${args[@]}" | tr -d '\r' || true)
done
for spec in "${PUSH[@]}"; do
  IFS='|' read -r img addr ref <<<"$spec"
  want_var="${img^^}_MANIFEST"
  [[ "${in_reg[http://$addr/v2/${ref%:*}/manifests/${ref##*:}]:-}" == "${!want_var}" ]] && continue
  creds=()
  [[ "$addr" == "$AREG" ]] && creds=(--dest-creds "$AUTH_USER:$AUTH_PASS")
  TMPDIR="$BASE/tmp" skopeo --policy "$ETC/skopeo-policy.json" copy -q --preserve-digests \
    --dest-tls-verify=false "${creds[@]}" "oci-archive:$IMGDIR/$img.oci.tar" "docker://$addr/$ref" \
    >>"$LOGD/push.log" 2>&1 || die_log "$LOGD/push.log" "skopeo could not push $img to $addr/$ref"
  log "pushed $img -> $addr/$ref"
done

# ---------------------------------------------------- 4. containerd registry config
# One hosts.toml per registry name. NB containerd 1.6 needs a [host."..."] table: a
# server-only hosts.toml fails to decode ("invalid `host` tree") and containerd then
# silently uses the real upstream (the egress guard is what catches that). Built aside
# and swapped in only when different: containerd re-reads it on every pull.
REDIRECT=(_default localhost docker.io registry-1.docker.io index.docker.io registry.k8s.io k8s.gcr.io
          gcr.io quay.io ghcr.io mcr.microsoft.com public.ecr.aws)
new="$CERTS_D.new"
rm -rf "$new"; mkdir -p "$new"
hosts_toml() {  # dir-name server-url
  mkdir -p "$new/$1"
  cat >"$new/$1/hosts.toml" <<EOF
# $1 -> $2 (loopback, plain HTTP). Generated by contrib/dev-env/up.sh.
server = "$2"

[host."$2"]
  capabilities = ["pull", "resolve"]
EOF
}
hosts_toml "$REG" "http://$REG"
hosts_toml "localhost:$REG_PORT" "http://localhost:$REG_PORT"
hosts_toml "$AREG" "http://$AREG"
hosts_toml "localhost:$AREG_PORT" "http://localhost:$AREG_PORT"
for r in "${REDIRECT[@]}"; do hosts_toml "$r" "http://$REG"; done
if [[ -d "$CERTS_D" ]] && diff -rq "$new" "$CERTS_D" >/dev/null 2>&1; then
  rm -rf "$new"
else
  rm -rf "$CERTS_D.old"; [[ -e "$CERTS_D" ]] && mv "$CERTS_D" "$CERTS_D.old"
  mv "$new" "$CERTS_D"; rm -rf "$CERTS_D.old"
fi

# --------------------------------------------------------------- 5. snapshotter
if [[ -z "$SNAP" ]]; then
  SNAP=native
  probe="$BASE/tmp/ovl-probe"
  rm -rf "$probe"; mkdir -p "$probe"/{l,u,w,m}
  if mount -t overlay overlay -o "lowerdir=$probe/l,upperdir=$probe/u,workdir=$probe/w" "$probe/m" 2>/dev/null; then
    umount "$probe/m"; SNAP=overlayfs
  fi
  rm -rf "$probe"
  log "snapshotter: $SNAP (probed)"
fi
{
  echo "# remembered by contrib/dev-env/up.sh for this BASE (environment variables VKCRI_<NAME> override)"
  echo "REGISTRY_PORT=$REG_PORT"; echo "AUTH_REGISTRY_PORT=$AREG_PORT"; echo "EGRESS_GUARD_PORT=$GUARD_PORT"
  echo "BRIDGE=$BRIDGE"; echo "CNI_SUBNET=$SUBNET"; echo "AUTH_USER=$AUTH_USER"; echo "AUTH_PASS=$AUTH_PASS"
  echo "SNAPSHOTTER=$SNAP"
} | put "$SETTINGS"

# -------------------------------------------------------------------- 6. config
put "$CFG" <<EOF
# generated by contrib/dev-env/up.sh -- private containerd of the vk-cri dev environment
version = 2
root = "$BASE/lib/containerd"
state = "$RUN/containerd"
oom_score = 0

[grpc]
  address = "$SOCK"
  uid = 0
  gid = 0

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  level = "$LOG_LEVEL"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$BASE/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$SANDBOX_IMAGE"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    disable_apparmor = true
    disable_cgroup = false
    # No CAP_SYS_RESOURCE on this kind of VM (bit 24 cleared in CapBnd): a negative
    # oom_score_adj (sandbox -998) fails in runc with "failed to update
    # /proc/self/oom_score_adj: Permission denied" unless CRI clamps it to
    # containerd's own value (0).
    restrict_oom_score_adj = true
    max_container_log_line_size = 16384
    enable_unprivileged_ports = false
    enable_unprivileged_icmp = false
    # network namespaces are bind-mounted under BASE/run/containerd (down.sh unmounts)
    netns_mounts_under_state_dir = true

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "$SNAP"
      default_runtime_name = "runc"
      discard_unpacked_layers = false

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "/usr/sbin/runc"
          Root = "$RUN/runc"
          SystemdCgroup = false

      # runc again under another name: the handler of the tests' RuntimeClass
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc-alt]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc-alt.options]
          BinaryName = "/usr/sbin/runc"
          Root = "$RUN/runc"
          SystemdCgroup = false

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI_BIN"
      conf_dir = "$ETC/cni/net.d"
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$CERTS_D"
EOF

# CNI: bridge + host-local. isGateway gives the host a connected route to the pod
# subnet (nothing for it leaves via eth0); ipMasq=false and no IPAM routes => pods
# have no default route and cannot reach beyond the bridge.
put "$CNI_CONF" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NETNAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$SUBNET"}]],
        "dataDir": "$BASE/lib/cni/networks"
      }
    }
  ]
}
EOF

# The bridge plugin (isGateway) sets net.ipv4.ip_forward=1 on the first pod; remember
# the value from before so down.sh can put it back.
[[ -e "$RUN/ip_forward.orig" ]] || ip link show "$BRIDGE" >/dev/null 2>&1 \
  || cat /proc/sys/net/ipv4/ip_forward >"$RUN/ip_forward.orig"
# Belt and braces: nothing from the pod bridge is forwarded off the bridge.
iptables -w 5 -C FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP 2>/dev/null \
  || iptables -w 5 -I FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP 2>/dev/null \
  || log "warning: could not add the iptables FORWARD guard for $BRIDGE"

# --------------------------------------------------------------- 7. containerd
# HTTP(S)_PROXY -> egress guard (refuses everything); Go never proxies loopback, and
# NO_PROXY says so explicitly. Restarted when config or environment changed (running
# containers survive: the shims keep them and containerd re-attaches on start).
CENV=(PATH="$DPATH" HTTP_PROXY="http://$GUARD" HTTPS_PROXY="http://$GUARD" NO_PROXY="localhost,127.0.0.0/8,::1"
      http_proxy="http://$GUARD" https_proxy="http://$GUARD" no_proxy="localhost,127.0.0.0/8,::1")
st_ctd=$( { cat "$CFG"; printf '%s\n' "${CENV[@]}"; } | hash16)
ctr_ok() { timeout 10 ctr --address "$SOCK" version >/dev/null 2>&1; }
cri_status() { timeout 10 ctr --address "$SOCK" plugins ls 2>/dev/null | awk '$2 == "cri" {print $NF}'; }
LOG="$LOGD/containerd.log"
ensure_daemon_ctd() {
  ensure_daemon containerd "$RE_CONTAINERD" "$st_ctd" "" env -i "${CENV[@]}" containerd --config "$CFG"
}
if pid=$(daemon_pid containerd "$RE_CONTAINERD") && [[ "$(cat "$RUN/containerd.stamp" 2>/dev/null)" == "$st_ctd" ]] \
   && ! { [[ -S "$SOCK" ]] && ctr_ok; }; then
  log "containerd (pid $pid) is running but its socket $SOCK does not answer: restarting it"
  stop_daemon containerd "$RE_CONTAINERD"
fi
if ! daemon_pid containerd "$RE_CONTAINERD" >/dev/null; then
  rm -f "$SOCK" "$SOCK.ttrpc"   # stale socket of a dead containerd
fi
log_off=$( [[ -f "$LOG" ]] && stat -c %s "$LOG" || echo 0)
ensure_daemon_ctd
if ((REUSED == 0)); then
  # the rotation in start_daemon may have moved the log away
  (($(stat -c %s "$LOG") >= log_off)) || log_off=0
  for i in $(seq 1 300); do
    [[ -S "$SOCK" ]] && ctr_ok && break
    alive "$(<"$RUN/containerd.pid")" || die_log "$LOG" "containerd died while starting"
    sleep 0.1
  done
  ctr_ok || die_log "$LOG" "containerd did not answer on $SOCK within 30 s"
fi
daemon_pid containerd "$RE_CONTAINERD" >/dev/null || die_log "$LOG" "containerd is not running"
cri=$(cri_status)
if [[ "$cri" != ok ]]; then
  {
    echo "up.sh: error: the CRI plugin of containerd is '${cri:-missing}', not ok. ctr plugins ls:"
    timeout 10 ctr --address "$SOCK" plugins ls 2>&1 | grep -E 'cri|error' || true
    echo "errors in $LOG:"
    { if ((REUSED)); then tail -n 300 "$LOG"; else tail -c +$((log_off + 1)) "$LOG"; fi; } \
      | grep -E 'level=(error|fatal)|failed to load plugin io.containerd.grpc.v1.cri' | tail -n 5
  } >&2
  die "CRI plugin not ok"
fi
if ((REUSED == 0)); then
  # the CRI service answers once it has recovered its state and started its streaming
  # server (a CRI call before that fails with "server is not initialized yet")
  for i in $(seq 1 100); do
    tail -c +$((log_off + 1)) "$LOG" | grep -q 'Start streaming server' && break
    sleep 0.1
  done
fi
log "containerd $( ((REUSED)) && echo "already running" || echo up) (pid $(<"$RUN/containerd.pid")), CRI plugin ok"

# ------------------------------------------------------------------ 8. images
# busybox and pause under their localhost/ names (ctr import) and under the open
# registry's names (ctr tag, same image id), so nothing needs a pull. pulltest is
# deliberately NOT imported: tests remove and pull it.
declare -A in_ctd=()
while read -r ref _ dig _; do in_ctd[$ref]=$dig; done \
  < <(timeout 30 ctr --address "$SOCK" -n "$NS" images ls 2>/dev/null | tail -n +2)
for spec in "busybox|$BUSYBOX_LOCAL|$REG/vk-cri/busybox:1" "pause|$PAUSE_LOCAL|$REG/vk-cri/pause:1"; do
  IFS='|' read -r img local_ref reg_ref <<<"$spec"
  want_var="${img^^}_MANIFEST"; want=${!want_var}
  if [[ "${in_ctd[$local_ref]:-}" != "$want" ]]; then
    timeout 120 ctr --address "$SOCK" -n "$NS" images import --snapshotter "$SNAP" "$IMGDIR/$img.oci.tar" \
      >>"$LOGD/import.log" 2>&1 || die_log "$LOGD/import.log" "ctr images import $img.oci.tar failed"
    log "imported $local_ref"
  fi
  if [[ "${in_ctd[$reg_ref]:-}" != "$want" ]]; then
    timeout 30 ctr --address "$SOCK" -n "$NS" images tag --force "$local_ref" "$reg_ref" \
      >>"$LOGD/import.log" 2>&1 || die_log "$LOGD/import.log" "ctr images tag $local_ref $reg_ref failed"
    log "tagged $reg_ref"
  fi
done

# ------------------------------------------------------------- 9. env.sh, ready
AUTH_B64=$(printf '%s:%s' "$AUTH_USER" "$AUTH_PASS" | base64 -w0)
{
  echo "# generated by contrib/dev-env/up.sh: source it (the Makefile does before tests)"
  for kv in \
    "VKCRI_DEV_BASE=$BASE" \
    "VKCRI_CRI_SOCKET=$SOCK" \
    "VKCRI_CRI_ENDPOINT=unix://$SOCK" \
    "CONTAINERD_ADDRESS=$SOCK" \
    "CONTAINERD_NAMESPACE=$NS" \
    "VKCRI_CONTAINERD_LOG=$LOG" \
    "VKCRI_REGISTRY=$REG" \
    "VKCRI_AUTH_REGISTRY=$AREG" \
    "VKCRI_AUTH_USER=$AUTH_USER" \
    "VKCRI_AUTH_PASS=$AUTH_PASS" \
    "VKCRI_AUTH_DOCKERCONFIGJSON={\"auths\":{\"$AREG\":{\"username\":\"$AUTH_USER\",\"password\":\"$AUTH_PASS\",\"auth\":\"$AUTH_B64\"}}}" \
    "VKCRI_BUSYBOX_IMAGE=$REG/vk-cri/busybox:1" \
    "VKCRI_LOCAL_BUSYBOX_IMAGE=$BUSYBOX_LOCAL" \
    "VKCRI_AUTH_BUSYBOX_IMAGE=$AREG/vk-cri/busybox:1" \
    "VKCRI_BUSYBOX_IMAGE_ID=$BUSYBOX_ID" \
    "VKCRI_PAUSE_IMAGE=$REG/vk-cri/pause:1" \
    "VKCRI_PAUSE_IMAGE_ID=$PAUSE_ID" \
    "VKCRI_SANDBOX_IMAGE=$SANDBOX_IMAGE" \
    "VKCRI_PULLTEST_IMAGE=$REG/vk-cri/pulltest:1" \
    "VKCRI_AUTH_PULLTEST_IMAGE=$AREG/vk-cri/pulltest:1" \
    "VKCRI_PULLTEST_IMAGE_ID=$PULLTEST_ID" \
    "VKCRI_EGRESS_GUARD=$GUARD" \
    "VKCRI_EGRESS_LOG=$LOGD/egress-guard.jsonl" \
    "VKCRI_CNI_SUBNET=$SUBNET" \
    "VKCRI_CNI_BRIDGE=$BRIDGE"; do
    v=${kv#*=}
    # plain when safe (also valid make syntax), else single-quoted (no value holds a ')
    if [[ "$v" =~ ^[A-Za-z0-9/._:@+=-]*$ ]]; then printf 'export %s=%s\n' "${kv%%=*}" "$v"
    else printf "export %s='%s'\n" "${kv%%=*}" "$v"; fi
  done
} | put "$BASE/env.sh"

cfg_hash=$( { cat "$SETTINGS" "$CFG" "$CNI_CONF" "$ETC/registry/public.yml" "$ETC/registry/auth.yml" "$htp" \
                  "$GUARD_PY" "$IMGDIR/digests.env" "$BASE/env.sh"
              find "$CERTS_D" -type f | sort | xargs cat; } | hash16)
printf 'config_hash=%s\nsocket=%s\nup_at=%s\n' "$cfg_hash" "$SOCK" "$(date -u +%FT%TZ)" >"$BASE/ready.tmp"
mv -f "$BASE/ready.tmp" "$BASE/ready"
log "ready (config $cfg_hash): source $BASE/env.sh"
echo "$SOCK"
