"""Storage rollback against the Storage API stand-in, through the official client.

Each test makes uniquely named buckets, backs them up with the mirror into tmp_path, damages the
live project, then plans, applies and validates the restore. Expected live states are written out
from what the test uploaded, not read back from the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from supabackup_pipeline.core import storage_mirror as sm
from supabackup_pipeline.core import storage_restore as sr
from supabackup_pipeline.core.storage_api import StorageApi

FAST = sm.Retry(attempts=4, base_delay=0.01, max_delay=0.05)
PUNCTUATION = "!*'()&$=@;:+,?"


def quiet(_: str) -> None:
    pass


def put(storage, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream",
        cache: str = "3600", metadata: dict | None = None) -> None:
    options = {"content-type": content_type, "cache-control": cache, "upsert": "true"}
    if metadata is not None:
        options["metadata"] = metadata
    storage.from_(bucket).upload(name, data, options)


def settings(api: StorageApi, bucket: str) -> dict:
    return next(b for b in sm.list_buckets(api, log=quiet) if b["id"] == bucket)


def live_settings(storage, bucket: str) -> tuple:
    """(public, file_size_limit, allowed_mime_types), as the official client reads them."""
    b = storage.get_bucket(bucket)
    return b.public, b.file_size_limit, b.allowed_mime_types


def backup(api: StorageApi, buckets: list[str], out: Path) -> Path:
    mirrors = [sm.mirror_bucket(api, settings(api, b), out, log=quiet, retry=FAST) for b in buckets]
    sm.write_storage_manifest(out, mirrors)
    return out


def live_objects(storage, bucket: str) -> dict[str, tuple]:
    """name -> (SHA-256 of the downloaded bytes, content type, cache control, user metadata), as the
    official client sees them (the test buckets hold less than a page)."""
    api = storage.from_(bucket)
    out = {}
    for o in api.list_v2({"limit": 1000, "prefix": ""}).objects:
        info = api.info(o.name)
        out[o.name] = (hashlib.sha256(api.download(o.name)).hexdigest(), o.metadata["mimetype"],
                       o.metadata["cacheControl"], info["metadata"])
    return out


def expect(objects: dict[str, tuple]) -> dict[str, tuple]:
    """name -> (bytes, type, cache seconds, metadata) as uploaded, in live_objects' shape."""
    return {n: (hashlib.sha256(d).hexdigest(), t, f"max-age={c}", m) for n, (d, t, c, m) in objects.items()}


def plan(api: StorageApi, root: Path, buckets=None, **kwargs) -> sr.StorageRestorePlan:
    return sr.plan_storage_restore(api, root, buckets, log=quiet, retry=FAST, **kwargs)


def apply(api: StorageApi, p: sr.StorageRestorePlan, root: Path, **kwargs) -> sr.StorageRestoreResult:
    return sr.apply_storage_restore(api, p, root, log=quiet, retry=FAST, **kwargs)


def validate(api: StorageApi, root: Path, buckets=None) -> list[str]:
    return sr.validate_storage(api, root, buckets, log=quiet, retry=FAST)


def triples(changes) -> set[tuple]:
    return {(c.bucket, c.name, c.reason) for c in changes}


# ------------------------------------------------------------------ the whole story

def test_damaged_project_is_planned_restored_validated_and_a_rerun_does_nothing(storage, storage_api,
                                                                                new_bucket, storage_faults,
                                                                                monkeypatch, tmp_path):
    a = new_bucket()
    b = new_bucket(public=True, file_size_limit=1000, allowed_mime_types=["image/png", "text/*"])
    c = new_bucket(file_size_limit=10_000, allowed_mime_types=["text/*", "application/octet-stream"])
    d = new_bucket()  # its limits are tightened after its object was written: restoring needs them lifted
    odd = f"odd names/with spaces {PUNCTUATION}.txt"
    a_objects = {
        "keep.txt": (b"unchanged", "text/plain", "60", None),
        "deleted.txt": (b"will be deleted", "text/plain", "3600", None),
        "overwritten.bin": (b"original bytes!", "application/octet-stream", "3600", None),
        "retyped.json": (b'{"k": 1}', "application/json", "3600", None),
        "recached.txt": (b"cache me", "text/plain", "60", None),
        "meta.txt": (b"tagged", "text/plain", "120", {"owner": "ada", "n": 1}),
        "nested/deep/er/file.txt": (b"deep", "text/plain", "3600", None),
        odd: (b"punctuation", "text/plain", "3600", {"k": "v"}),
        "empty.bin": (b"", "application/octet-stream", "3600", None),
        "also-empty.bin": (b"", "application/octet-stream", "3600", None),
        "a": (b"file a", "text/plain", "3600", None),
        "a/b": (b"file a/b", "text/plain", "3600", None),
    }
    b_objects = {"img.png": (os.urandom(500), "image/png", "3600", None),
                 "notes.txt": (b"notes", "text/plain", "30", {"x": "y"})}
    c_objects = {"c.txt": (os.urandom(2000), "text/plain", "3600", None),
                 "c.bin": (b"c", "application/octet-stream", "3600", None)}
    d_objects = {"legacy.bin": (os.urandom(3000), "application/octet-stream", "3600", None)}
    for bucket, objects in ((a, a_objects), (b, b_objects), (c, c_objects), (d, d_objects)):
        for name, (data, ctype, cache, meta) in objects.items():
            put(storage, bucket, name, data, ctype, cache, meta)
    storage.update_bucket(d, {"file_size_limit": 1000, "allowed_mime_types": ["text/*"]})
    put(storage, a, "ghost.txt", b"vanishes during the backup")
    listed = sm.list_objects

    def then_delete(client, name, *args, **kwargs):  # ghost.txt is listed, then gone: recorded as missing
        objects = listed(client, name, *args, **kwargs)
        if name == a:
            client.remove(name, ["ghost.txt"])
        return objects

    monkeypatch.setattr(sm, "list_objects", then_delete)
    root = backup(storage_api, [a, b, c, d], tmp_path / "backup" / "storage")
    monkeypatch.undo()
    manifest = json.loads((root / "manifest.json").read_text())
    assert {o["name"]: o["path"] for o in manifest["buckets"][a]["objects"]}["a"] == "a~1"
    assert manifest["buckets"][a]["missing"] == ["ghost.txt"]

    # ---- the damage
    api = storage.from_(a)
    api.remove(["deleted.txt", "empty.bin", "a"])
    put(storage, a, "overwritten.bin", b"OTHER bytes, ok")  # same size: only the MD5 tells
    put(storage, a, "a/b", b"changed a/b")
    put(storage, a, "retyped.json", b'{"k": 1}', "text/plain")  # same bytes, new content type
    put(storage, a, "recached.txt", b"cache me", "text/plain", "3600")  # same bytes, new cache control
    put(storage, a, "meta.txt", b"tagged", "text/plain", "120", {"owner": "eve"})  # same bytes, new user metadata
    put(storage, a, "added.txt", b"not in the backup")
    put(storage, a, "nested/deep/added.bin", b"")
    put(storage, a, "ghost.txt", b"came back after the backup")  # the backup has no bytes of it: left alone
    storage.empty_bucket(b)
    storage.delete_bucket(b)
    storage.from_(c).remove(["c.txt"])
    storage.update_bucket(c, {"public": True, "file_size_limit": 100, "allowed_mime_types": ["image/png"]})
    storage.from_(d).remove(["legacy.bin"])
    e = new_bucket()  # a live bucket the backup does not know
    put(storage, e, "e.txt", b"e")

    # ---- the plan
    p = plan(storage_api, root)
    assert p.buckets == sorted([a, b, c, d])
    b_settings = {"name": b, "public": True, "file_size_limit": 1000, "allowed_mime_types": ["image/png", "text/*"]}
    assert p.create_buckets == [sr.BucketChange(b, b_settings, {}, ())]
    c_settings = {"name": c, "public": False, "file_size_limit": 10_000,
                  "allowed_mime_types": ["text/*", "application/octet-stream"]}
    d_settings = {"name": d, "public": False, "file_size_limit": 1000, "allowed_mime_types": ["text/*"]}
    assert sorted(p.update_buckets, key=lambda x: x.bucket) == sorted([
        sr.BucketChange(c, c_settings, {"public": [True, False], "file_size_limit": [100, 10_000],
                                        "allowed_mime_types": [["image/png"], ["text/*", "application/octet-stream"]]}),
        sr.BucketChange(d, d_settings, {}, ("file_size_limit", "allowed_mime_types")),
    ], key=lambda x: x.bucket)
    assert triples(p.uploads) == {
        (a, "deleted.txt", "missing"), (a, "empty.bin", "missing"), (a, "a", "missing"),
        (a, "overwritten.bin", "content"), (a, "a/b", "content"),
        (a, "retyped.json", "metadata"), (a, "recached.txt", "metadata"), (a, "meta.txt", "metadata"),
        (b, "img.png", "missing"), (b, "notes.txt", "missing"), (c, "c.txt", "missing"), (d, "legacy.bin", "missing"),
    }
    by_name = {(o.bucket, o.name): o for o in p.uploads}
    assert by_name[a, "a"].path == f"{a}/a~1" and by_name[a, "a"].size == 6
    assert "MD5" in by_name[a, "overwritten.bin"].detail and "size" in by_name[a, "a/b"].detail
    assert "content type" in by_name[a, "retyped.json"].detail
    assert "cache control 'max-age=3600' != backup 'max-age=60'" in by_name[a, "recached.txt"].detail
    assert "user metadata" in by_name[a, "meta.txt"].detail
    assert triples(p.deletes) == {(a, "added.txt", "extra"), (a, "nested/deep/added.bin", "extra")}
    assert [(o.bucket, o.name, o.detail) for o in p.missing_in_backup] == [(a, "ghost.txt", "exists live, left alone")]
    assert e in p.extra_buckets and not set(p.extra_buckets) & {a, b, c, d} and p.delete_buckets == []
    assert p.unchanged == 4 + 1  # keep.txt, nested/..., the odd name, also-empty.bin; c.bin
    assert p.counts()["uploads_by_reason"] == {"missing": 7, "content": 2, "metadata": 3}
    assert p.upload_bytes == sum(len(x[0]) for x in (a_objects["deleted.txt"], a_objects["a"],
                                                     a_objects["overwritten.bin"], a_objects["a/b"],
                                                     a_objects["retyped.json"], a_objects["recached.txt"],
                                                     a_objects["meta.txt"], *b_objects.values(), c_objects["c.txt"],
                                                     d_objects["legacy.bin"]))
    text = p.describe()
    assert "buckets to create (1):" in text and "bucket settings to restore (2):" in text
    assert f"objects to upload, {p.upload_bytes} bytes [7 missing, 2 content, 3 metadata] (12):" in text
    assert f"{a}/{odd} (missing" not in text and f"{a}/added.txt (extra)" in text and e in text
    assert sr.StorageRestorePlan.from_dict(json.loads(json.dumps(p.to_dict()))) == p

    # validation sees the same differences
    problems = validate(storage_api, root)
    assert len(problems) == 1 + 3 + 12 + 2 and f"bucket {b!r} does not exist" in problems
    assert f"bucket {a!r} object 'added.txt' is not in the backup" in problems

    # ---- apply
    downloads = storage_faults.download_count
    result = apply(storage_api, p, root, workers=4)
    assert result.buckets_created == [b] and sorted(result.buckets_updated) == [c]
    assert sorted(result.uploaded) == sorted(f"{o.bucket}/{o.name}" for o in p.uploads)
    assert result.uploaded_bytes == p.upload_bytes and result.already_done == 0
    assert sorted(result.deleted) == [f"{a}/added.txt", f"{a}/nested/deep/added.bin"]
    assert storage_faults.download_count == downloads  # every eTag was an MD5: nothing downloaded to compare

    a_expected = expect(a_objects) | {"ghost.txt": (hashlib.sha256(b"came back after the backup").hexdigest(),
                                                    "application/octet-stream", "max-age=3600", None)}
    assert live_objects(storage, a) == a_expected
    assert live_objects(storage, b) == expect(b_objects)
    assert live_objects(storage, c) == expect(c_objects)
    assert live_objects(storage, d) == expect(d_objects)
    assert live_settings(storage, b) == (True, 1000, ["image/png", "text/*"])
    assert live_settings(storage, c) == (False, 10_000, ["text/*", "application/octet-stream"])
    assert live_settings(storage, d) == (False, 1000, ["text/*"])  # lifted for the restore, then put back
    assert live_objects(storage, e) == expect({"e.txt": (b"e", "application/octet-stream", "3600", None)})
    assert validate(storage_api, root) == []

    # ---- a rerun transfers nothing, with a new plan or with the old one
    downloads = storage_faults.download_count
    again = plan(storage_api, root)
    assert again.empty and again.unchanged == 17 and "nothing to do" in again.describe()
    rerun = apply(storage_api, again, root)
    assert rerun.uploaded == [] and rerun.deleted == [] and rerun.buckets_created == []
    stale = apply(storage_api, p, root)
    assert stale.uploaded == [] and stale.deleted == [] and stale.buckets_created == [] and stale.buckets_updated == []
    assert stale.already_done == 12 + 2 + 3
    assert storage_faults.download_count == downloads
    assert validate(storage_api, root) == []


# ------------------------------------------------------------------ failures and resuming

def test_transient_503s_on_uploads_are_retried(storage, storage_api, new_bucket, storage_faults, tmp_path):
    bucket = new_bucket()
    objects = {f"f/{i}.txt": (f"object {i}".encode(), "text/plain", "3600", None) for i in range(5)}
    for name, (data, ctype, cache, meta) in objects.items():
        put(storage, bucket, name, data, ctype, cache, meta)
    root = backup(storage_api, [bucket], tmp_path / "storage")
    storage.empty_bucket(bucket)

    p = plan(storage_api, root)
    storage_faults.fail_next("POST", rf"^/object/{bucket}/", 503, times=2)
    logged: list[str] = []
    result = sr.apply_storage_restore(storage_api, p, root, retry=FAST, log=logged.append, workers=2)
    assert sorted(result.uploaded) == sorted(f"{bucket}/{n}" for n in objects)
    assert sum(" retry " in line and "503" in line for line in logged) == 2
    assert live_objects(storage, bucket) == expect(objects) and validate(storage_api, root) == []


def test_a_crash_mid_apply_is_finished_by_a_rerun_and_lifted_limits_are_put_back(storage, storage_api,
                                                                                 new_bucket, storage_faults,
                                                                                 monkeypatch, tmp_path):
    bucket = new_bucket()
    objects = {f"obj-{i:02d}.bin": (os.urandom(100 + i), "application/octet-stream", "3600", None) for i in range(12)}
    for name, (data, ctype, cache, meta) in objects.items():
        put(storage, bucket, name, data, ctype, cache, meta)
    storage.update_bucket(bucket, {"allowed_mime_types": ["image/png"]})  # the backup's own limit rejects them
    root = backup(storage_api, [bucket], tmp_path / "storage")
    storage.empty_bucket(bucket)
    p = plan(storage_api, root)
    assert p.update_buckets == [sr.BucketChange(bucket, {"name": bucket, "public": False, "file_size_limit": None,
                                                         "allowed_mime_types": ["image/png"]}, {},
                                                ("allowed_mime_types",))]

    # a kill after 5 uploads (workers=1: exactly 5)
    real, calls = sr._upload_one, []

    def crashing(*args, **kwargs):
        if len(calls) == 5:
            raise RuntimeError("killed")
        real(*args, **kwargs)
        calls.append(args[4]["name"])

    monkeypatch.setattr(sr, "_upload_one", crashing)
    with pytest.raises(sr.StorageRestoreError, match=rf"{bucket}.*obj-05.*killed") as crash:
        apply(storage_api, p, root, workers=1)
    assert len(crash.value.result.uploaded) == 5
    assert live_settings(storage, bucket) == (False, None, ["image/png"])  # put back despite the crash
    monkeypatch.undo()

    # a server that keeps failing one object: the others go through, the failure names it
    storage_faults.fail_next("POST", rf"^/object/{bucket}/obj-09", 503, times=100)
    with pytest.raises(sr.StorageRestoreError, match=r"obj-09"):
        apply(storage_api, p, root, workers=1)  # the same (stale) plan
    storage_faults.reset()
    left = plan(storage_api, root)
    assert sorted(o.name for o in left.uploads) == [f"obj-{i:02d}.bin" for i in range(9, 12)]

    # the rerun, still with the first plan, uploads only what is left
    result = apply(storage_api, p, root, workers=3)
    assert sorted(result.uploaded) == [f"{bucket}/obj-{i:02d}.bin" for i in range(9, 12)]
    assert result.already_done == 9
    assert live_objects(storage, bucket) == expect(objects)
    assert live_settings(storage, bucket) == (False, None, ["image/png"])
    assert validate(storage_api, root) == []


def test_a_damaged_backup_file_is_never_uploaded(storage, storage_api, new_bucket, tmp_path):
    bucket = new_bucket()
    put(storage, bucket, "x/good.txt", b"good", "text/plain")
    put(storage, bucket, "x/rotten.txt", b"rotten", "text/plain")
    root = backup(storage_api, [bucket], tmp_path / "storage")
    storage.from_(bucket).remove(["x/rotten.txt"])
    (root / bucket / "x" / "rotten.txt").write_bytes(b"R0tten")  # same size, other bytes
    p = plan(storage_api, root)
    assert triples(p.uploads) == {(bucket, "x/rotten.txt", "missing")}
    with pytest.raises(sr.StorageRestoreError, match=r"rotten\.txt.*does not match the manifest"):
        apply(storage_api, p, root)
    assert [o["name"] for o in sm.list_objects(storage_api, bucket, log=quiet)] == ["x/good.txt"]


# ------------------------------------------------------------------ hashes and edge cases

def test_md5s_are_computed_when_an_etag_is_not_one(storage, storage_api,
                                                   new_bucket, storage_faults, monkeypatch, tmp_path):
    bucket = new_bucket()
    put(storage, bucket, "multipart.bin", os.urandom(4000))
    put(storage, bucket, "sha-only.bin", b"only a sha256 recorded")
    put(storage, bucket, "changed.bin", b"before")
    root = backup(storage_api, [bucket], tmp_path / "storage")
    manifest = json.loads((root / "manifest.json").read_text())
    for o in manifest["buckets"][bucket]["objects"]:
        if o["name"] in ("sha-only.bin", "changed.bin"):
            o["etag"] = None  # e.g. an S3 multipart eTag, not an MD5: the backup's file is hashed
    (root / "manifest.json").write_text(json.dumps(manifest))
    put(storage, bucket, "changed.bin", b"after!")  # same size

    listed = sr.list_objects

    def multipart(client, name, *args, **kwargs):  # the live eTag of multipart.bin is not an MD5
        objects = listed(client, name, *args, **kwargs)
        for o in objects:
            if o["name"] == "multipart.bin":
                o["metadata"] = {**o["metadata"], "eTag": '"0123456789abcdef0123456789abcdef-3"'}
        return objects

    monkeypatch.setattr(sr, "list_objects", multipart)
    before = storage_faults.download_count
    p = plan(storage_api, root)
    assert storage_faults.downloads[before:] == [f"{bucket}/multipart.bin"]  # hashed live, found equal
    assert p.checked["live_hashed"] == 1 and p.checked["backup_hashed"] == 2
    assert triples(p.uploads) == {(bucket, "changed.bin", "content")} and p.unchanged == 2


def test_only_the_named_buckets_and_extra_buckets_only_when_asked(storage, storage_api, new_bucket, tmp_path):
    one, two = new_bucket(), new_bucket()
    put(storage, one, "1.txt", b"1")
    put(storage, two, "2.txt", b"2")
    root = backup(storage_api, [one, two], tmp_path / "storage")
    storage.from_(one).remove(["1.txt"])
    storage.from_(two).remove(["2.txt"])
    extra = new_bucket()
    put(storage, extra, "x.txt", b"x")

    p = plan(storage_api, root, [two])
    assert triples(p.uploads) == {(two, "2.txt", "missing")} and p.extra_buckets == [] and p.buckets == [two]
    with pytest.raises(sr.StorageRestoreError, match="not in the backup"):
        plan(storage_api, root, ["no-such-bucket"])

    full = plan(storage_api, root, delete_extra_buckets=True)
    assert extra in full.delete_buckets and "to DELETE" in full.describe()
    full.delete_buckets = [extra]  # the shared stand-in holds other tests' buckets: delete only ours
    result = apply(storage_api, full, root)
    assert result.buckets_deleted == [extra] and extra not in {b["id"] for b in sm.list_buckets(storage_api, log=quiet)}
    assert validate(storage_api, root) == []


def _recorded(root, bucket: str, **fields) -> None:
    """As if the backup had recorded these values for its one object."""
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["buckets"][bucket]["objects"][0].update(fields)
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_any_cache_control_and_content_type_parameters_come_back_exactly(storage, storage_api, new_bucket, tmp_path):
    """Values an S3 tool or a raw upload set (`public, max-age=30, immutable`, a charset): a form
    upload would store "max-age=30" and drop the charset; the raw upload sends them as headers,
    which storage-api stores as sent."""
    bucket = new_bucket()
    put(storage, bucket, "c.txt", b"c", "text/plain", "60")
    root = backup(storage_api, [bucket], tmp_path / "storage")
    _recorded(root, bucket, cacheControl="public, max-age=30, immutable", mimetype="text/plain;charset=UTF-8",
              user_metadata={"owner": "ünï", "tags": ["a", "b"]})

    p = plan(storage_api, root)
    assert triples(p.uploads) == {(bucket, "c.txt", "metadata")} and p.warnings == []
    apply(storage_api, p, root)
    meta = sm.list_objects(storage_api, bucket, log=quiet)[0]["metadata"]
    assert (meta["cacheControl"], meta["mimetype"]) == ("public, max-age=30, immutable", "text/plain;charset=UTF-8")
    assert storage_api.info(bucket, "c.txt")["metadata"] == {"owner": "ünï", "tags": ["a", "b"]}
    assert validate(storage_api, root) == [] and plan(storage_api, root).empty


def test_user_metadata_too_large_for_a_header_goes_as_a_form_and_its_cache_control_is_warned_about(
        storage, storage_api, new_bucket, tmp_path):
    bucket = new_bucket()
    put(storage, bucket, "c.txt", b"c", "text/plain", "60")
    root = backup(storage_api, [bucket], tmp_path / "storage")
    large = {"notes": "x" * 5000}
    _recorded(root, bucket, cacheControl="public, max-age=30", user_metadata=large)

    p = plan(storage_api, root)
    assert triples(p.uploads) == {(bucket, "c.txt", "metadata")} and "public, max-age=30" in p.warnings[0]
    apply(storage_api, p, root)
    assert sm.list_objects(storage_api, bucket, log=quiet)[0]["metadata"]["cacheControl"] == "max-age=30"
    assert storage_api.info(bucket, "c.txt")["metadata"] == large
    assert plan(storage_api, root).empty


def test_cache_control_mapping():
    assert sr._cache_field("max-age=60") == ("60", "max-age=60", True)
    assert sr._cache_field("no-cache") == ("", "no-cache", True)
    assert sr._cache_field(None) == (None, None, True)
    assert sr._cache_field("public, max-age=5") == ("5", "max-age=5", False)
    assert sr._mime_allowed("text/plain;charset=UTF-8", ["TEXT/*"]) and not sr._mime_allowed("image/png", ["text/*"])
    assert sr._mime_allowed("anything", []) and sr._mime_allowed("image/png", None)
