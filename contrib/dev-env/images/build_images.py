#!/usr/bin/env python3
"""Build the dev environment's tiny OCI images as OCI image-layout tarballs.

Owns: the content of the three test images and their digests. Must not talk to a
registry or to containerd (up.sh pushes and imports the tarballs).

Stdlib only (tarfile, hashlib, json). Output is byte-for-byte deterministic for the
same input binaries (mtime 0, uid/gid 0, sorted entries, uncompressed layers), so
the digests are stable across rebuilds and machines with the same Debian packages.

Images (each OUT/<name>.oci.tar, one linux/amd64 manifest, one layer):
  busybox   /bin/busybox (static) + every applet as a symlink, Cmd ["sh"]
  pause     /pause (static C binary from pause.c, --pause-bin) or, without it,
            a busybox `sh` trap loop
  pulltest  one small text file + its own config (label io.vk-cri.image=pulltest):
            an image id shared with no other image, for RemoveImage/PullImage tests
            (CRI RemoveImage removes every tag of an image id)

Usage:
  build_images.py --out DIR [--busybox /bin/busybox] [--pause-bin FILE]
Writes DIR/{busybox,pause,pulltest}.oci.tar, DIR/digests.json and DIR/digests.env
(shell: BUSYBOX_MANIFEST=sha256:... BUSYBOX_ID=sha256:... for each image; the id is
the config digest, which is what CRI reports as the image id).
"""
import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

ARCH = "amd64"
OS = "linux"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EPOCH = "1970-01-01T00:00:00Z"

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"  # uncompressed: digest == diff_id


def _ti(name, typ, mode, size=0, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type = typ
    ti.mode = mode
    ti.size = size
    ti.linkname = linkname
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def make_tar(entries):
    """entries: dict path -> ("dir", mode) | ("file", mode, bytes) | ("symlink", target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in sorted(entries):
            e = entries[path]
            if e[0] == "dir":
                tf.addfile(_ti(path, tarfile.DIRTYPE, e[1]))
            elif e[0] == "file":
                data = e[2]
                tf.addfile(_ti(path, tarfile.REGTYPE, e[1], len(data)), io.BytesIO(data))
            elif e[0] == "symlink":
                tf.addfile(_ti(path, tarfile.SYMTYPE, 0o777, linkname=e[1]))
            else:
                raise ValueError(e)
    return buf.getvalue()


def add_parents(entries, path):
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d and d not in entries:
            entries[d] = ("dir", 0o755)


def base_entries():
    e = {}
    for d in ["bin", "dev", "etc", "proc", "sys", "root", "usr", "usr/bin",
              "usr/sbin", "sbin", "var", "run"]:
        e[d] = ("dir", 0o755)
    e["tmp"] = ("dir", 0o1777)
    e["root"] = ("dir", 0o700)
    e["etc/passwd"] = ("file", 0o644,
                       b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    e["etc/group"] = ("file", 0o644, b"root:x:0:\nnogroup:x:65534:\n")
    return e


def _json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def write_oci_tar(out_path, ref, layer, cfg):
    """Write one single-layer image as an OCI layout tarball; return (manifest, config) digests."""
    blobs = {}

    def blob(data):
        d = hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return "sha256:" + d, len(data)

    layer_digest, layer_size = blob(layer)
    config = {
        "created": EPOCH,
        "architecture": ARCH,
        "os": OS,
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": EPOCH, "created_by": "vk-cri contrib/dev-env/images/build_images.py"}],
    }
    cfg_digest, cfg_size = blob(_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": MT_LAYER, "digest": layer_digest, "size": layer_size}],
    }
    man_digest, man_size = blob(_json(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            "mediaType": MT_MANIFEST,
            "digest": man_digest,
            "size": man_size,
            "platform": {"architecture": ARCH, "os": OS},
            "annotations": {
                # containerd's importer uses this one verbatim as the image name
                "io.containerd.image.name": ref,
                # OCI standard tag annotation (tag part only)
                "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1],
            },
        }],
    }
    entries = {
        "oci-layout": ("file", 0o644, json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
        "index.json": ("file", 0o644, _json(index)),
        "blobs": ("dir", 0o755),
        "blobs/sha256": ("dir", 0o755),
    }
    for d, data in blobs.items():
        entries["blobs/sha256/" + d] = ("file", 0o644, data)
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(make_tar(entries))
    os.replace(tmp, out_path)
    return man_digest, cfg_digest


def busybox_image(busybox):
    bb = open(busybox, "rb").read()
    out = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout
    e = base_entries()
    e["bin/busybox"] = ("file", 0o755, bb)
    for p in (line.strip() for line in out.splitlines()):
        if not p or p == "bin/busybox":
            continue
        add_parents(e, p)
        e[p] = ("symlink", "../" * p.count("/") + "bin/busybox")
    return make_tar(e), {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"}


def pause_image(pause_bin, busybox):
    e = {"etc": ("dir", 0o755), "dev": ("dir", 0o755), "proc": ("dir", 0o755), "sys": ("dir", 0o755)}
    if pause_bin and os.path.exists(pause_bin):
        e["pause"] = ("file", 0o755, open(pause_bin, "rb").read())
        ep = ["/pause"]
    else:
        e["bin"] = ("dir", 0o755)
        e["bin/busybox"] = ("file", 0o755, open(busybox, "rb").read())
        e["bin/sh"] = ("symlink", "busybox")
        e["bin/sleep"] = ("symlink", "busybox")
        ep = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 2147483647 & wait $!; done"]
    return make_tar(e), {"Env": [PATH_ENV], "Entrypoint": ep, "WorkingDir": "/", "User": "0"}


def pulltest_image():
    e = {"vk-cri-pulltest.txt": ("file", 0o644,
                                 b"vk-cri pull test image 1: pulled, removed and pulled again by tests\n")}
    cfg = {"Env": [PATH_ENV], "Cmd": ["/vk-cri-pulltest.txt"], "WorkingDir": "/",
           "Labels": {"io.vk-cri.image": "pulltest"}}
    return make_tar(e), cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--pause-bin", default=None, help="static pause binary; busybox fallback if absent")
    ap.add_argument("--pause-ref", default="localhost/vk-cri/pause:1")
    ap.add_argument("--busybox-ref", default="localhost/vk-cri/busybox:1")
    ap.add_argument("--pulltest-ref", default="localhost/vk-cri/pulltest:1")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    images = [
        ("busybox", a.busybox_ref, busybox_image(a.busybox)),
        ("pause", a.pause_ref, pause_image(a.pause_bin, a.busybox)),
        ("pulltest", a.pulltest_ref, pulltest_image()),
    ]
    result = {}
    env_lines = []
    for name, ref, (layer, cfg) in images:
        man, cid = write_oci_tar(os.path.join(a.out, name + ".oci.tar"), ref, layer, cfg)
        result[name] = {"ref": ref, "file": name + ".oci.tar", "manifest": man, "id": cid}
        env_lines += [f"{name.upper()}_MANIFEST={man}", f"{name.upper()}_ID={cid}"]
    ids = [v["id"] for v in result.values()]
    if len(set(ids)) != len(ids):
        sys.exit("build_images: two images share an image id")
    with open(os.path.join(a.out, "digests.json.tmp"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(a.out, "digests.env.tmp"), "w") as f:
        f.write("\n".join(env_lines) + "\n")
    os.replace(os.path.join(a.out, "digests.json.tmp"), os.path.join(a.out, "digests.json"))
    os.replace(os.path.join(a.out, "digests.env.tmp"), os.path.join(a.out, "digests.env"))
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
