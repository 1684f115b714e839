#!/usr/bin/env python3
"""Writes a one-layer OCI image of incompressible random data for bench/proxy.sh.

    make_image.py LAYOUT_DIR TAG MIB

Adds the image to the `oci:` layout directory LAYOUT_DIR (created if needed) under TAG.
Its one layer is a tar holding one file of MIB MiB from os.urandom, wrapped in gzip with
compression level 0 (stored blocks): skopeo pushes a gzip layer as it is, where it would
spend a minute compressing an uncompressed one, and random data would not shrink anyway.
The blob is therefore MIB MiB plus about 5 bytes per 64 KiB and the headers.

Prints one JSON line: {"tag", "manifest", "config", "layer", "layer_size", "diff_id"}.
"""

import hashlib
import json
import os
import sys
import tarfile
import zlib

CHUNK = 1 << 20
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


def write_blob(layout: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


def main() -> None:
    layout, tag, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')

    size = mib * CHUNK
    info = tarfile.TarInfo("random.bin")
    info.size, info.mode, info.mtime = size, 0o644, 0
    tar_hash, gz_hash = hashlib.sha256(), hashlib.sha256()
    compressor = zlib.compressobj(0, zlib.DEFLATED, 31)  # gzip wrapper, stored blocks
    temporary = os.path.join(layout, "blobs", "sha256", f".partial-{tag}")
    layer_size = 0
    with open(temporary, "wb") as out:

        def feed(data: bytes) -> None:
            nonlocal layer_size
            tar_hash.update(data)
            packed = compressor.compress(data)
            gz_hash.update(packed)
            out.write(packed)
            layer_size += len(packed)

        feed(info.tobuf(format=tarfile.USTAR_FORMAT))
        left = size
        while left:
            chunk = os.urandom(min(CHUNK, left))
            feed(chunk)
            left -= len(chunk)
        feed(b"\0" * (-size % 512) + b"\0" * 1024)  # padding, then the end-of-archive blocks
        tail = compressor.flush()
        gz_hash.update(tail)
        out.write(tail)
        layer_size += len(tail)
    layer = "sha256:" + gz_hash.hexdigest()
    os.replace(temporary, os.path.join(layout, "blobs", "sha256", gz_hash.hexdigest()))
    diff_id = "sha256:" + tar_hash.hexdigest()

    config_bytes = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": f"bench/proxy: {mib} MiB of random data"}],
    }).encode()
    config = write_blob(layout, config_bytes)
    manifest_bytes = json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                   "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer,
                    "size": layer_size}],
    }).encode()
    manifest = write_blob(layout, manifest_bytes)

    index_path = os.path.join(layout, "index.json")
    index = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
    index["manifests"] = [m for m in index["manifests"]
                          if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    index["manifests"].append({"mediaType": MANIFEST_MEDIA_TYPE, "digest": manifest, "size": len(manifest_bytes),
                               "annotations": {"org.opencontainers.image.ref.name": tag}})
    with open(index_path, "w") as f:
        json.dump(index, f)
    print(json.dumps({"tag": tag, "manifest": manifest, "config": config, "layer": layer,
                      "layer_size": layer_size, "diff_id": diff_id}))


if __name__ == "__main__":
    main()
