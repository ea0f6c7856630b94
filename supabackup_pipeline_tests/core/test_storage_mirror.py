"""Storage bucket mirrors against the Storage API stand-in, through the official client.

Each test makes its own uniquely named buckets (the stand-in is shared by the session) and
removes them afterwards, so a run of the `storage_buckets` asset only sees what tests leave behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest

from supabackup_pipeline.assets.keys import STORAGE_BUCKETS_KEY, bucket_key
from supabackup_pipeline.assets.storage import build_storage_mirror
from supabackup_pipeline.core import storage_mirror as sm
from supabackup_pipeline.core.discovery_cache import read_catalog
from supabackup_pipeline.core.errors import UnsafeName
from supabackup_pipeline.core.files import sha256_file
from supabackup_pipeline.core.manifest import write_manifest_and_publish
from supabackup_pipeline.core.storage_api import CHUNK, StorageApi
from supabackup_pipeline.core.store import BackupStore
from supabackup_pipeline.partitions import BACKUP_PARTITIONS_NAME
from supabackup_pipeline.resources import BackupStorage, SupabaseStorage

FAST = sm.Retry(attempts=4, base_delay=0.01, max_delay=0.05)
PUNCTUATION = "!*'()&$=@;:+,?"


def upload(storage, bucket: str, objects: dict[str, bytes], workers: int = 16, **file_options) -> None:
    files = storage.from_(bucket)
    options = {"content-type": "application/octet-stream", **file_options}
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda item: files.upload(item[0], item[1], options), objects.items()))


def settings(api: StorageApi, bucket: str) -> dict:
    return next(b for b in sm.list_buckets(api, log=lambda _: None) if b["id"] == bucket)


def mirror(api: StorageApi, bucket: str, out: Path, previous: Path | None = None, **kwargs) -> sm.BucketMirror:
    """Mirror one bucket into `out` (a storage/ folder) and write its storage/manifest.json."""
    kwargs.setdefault("retry", FAST)
    result = sm.mirror_bucket(api, settings(api, bucket), out, previous, log=lambda _: None, **kwargs)
    sm.write_storage_manifest(out, [result])
    return result


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_private(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"


# ------------------------------------------------------------------ content

def test_mirror_is_byte_exact_private_and_listed_case_exactly(storage, storage_api,
                                                              new_bucket, storage_faults, tmp_path):
    bucket = new_bucket()
    big = os.urandom(9 * 1024 * 1024 + 123)
    objects = {
        "top.txt": b"top",
        "empty.bin": b"",
        "a/b/c/deep.txt": b"deep down",
        "videos/big.bin": big,
        f"odd names/with spaces {PUNCTUATION}.txt": b"punctuation",
        f"{PUNCTUATION}/x": b"folder of punctuation",
        "Case/A.txt": b"upper",
        "case/b.txt": b"lower",
    }
    upload(storage, bucket, objects)
    storage.from_(bucket).upload("meta/tagged.json", b"{}", {"content-type": "application/json",
                                                             "cache-control": "60", "metadata": {"owner": "ada"}})
    objects["meta/tagged.json"] = b"{}"
    storage_faults.fail_next("POST", r"^/object/list/", status=418, times=100)  # list v1 must never be used

    out = tmp_path / "storage"
    result = mirror(storage_api, bucket, out, workers=4)

    assert files_under(out / bucket) == objects  # byte for byte, folders and case kept
    assert_private(out)
    assert result.bytes == sum(map(len, objects.values())) and result.linked == 0 and result.missing == []
    assert result.downloaded_bytes == result.bytes
    assert sorted(storage_faults.downloads) == sorted(f"{bucket}/{n}" for n in objects)
    by_name = {o["name"]: o for o in result.objects}
    assert by_name["videos/big.bin"]["sha256"] == hashlib.sha256(big).hexdigest()
    assert by_name["videos/big.bin"]["etag"] == f'"{hashlib.md5(big).hexdigest()}"'
    tagged = by_name["meta/tagged.json"]
    assert (tagged["user_metadata"], tagged["mimetype"], tagged["cacheControl"]) == (
        {"owner": "ada"}, "application/json", "max-age=60")
    assert result.files == {f"storage/{bucket}/{n}": {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                            for n, b in objects.items()}
    manifest = json.loads((out / "manifest.json").read_text())
    assert [o["name"] for o in manifest["buckets"][bucket]["objects"]] == sorted(objects)


def test_more_than_one_page_of_objects_is_listed_completely(storage, storage_api, new_bucket, storage_faults, tmp_path):
    bucket = new_bucket()
    # mixed case and `_` (a LIKE wildcard) around the 1,000-object page boundary
    objects = {f"{'F' if i % 2 else 'f'}older_{i % 3}/obj-{i:04d}.txt": str(i).encode() for i in range(1105)}
    upload(storage, bucket, objects, workers=24)
    logged: list[str] = []
    result = sm.mirror_bucket(storage_api, settings(storage_api, bucket), tmp_path / "storage", workers=8, retry=FAST,
                              user_metadata=False, log=logged.append, progress_every=0.05)
    assert len(result.objects) == 1105 and storage_faults.download_count == 1105
    assert len(logged) >= 2 and logged[-1].startswith(f"bucket {bucket!r}: 1105/1105 objects")  # progress
    assert files_under(tmp_path / "storage" / bucket) == objects


def test_empty_bucket_and_bucket_settings_are_recorded(storage, storage_api, new_bucket, tmp_path):
    public = new_bucket(public=True, file_size_limit=1024 * 1024, allowed_mime_types=["image/png", "text/*"])
    private = new_bucket()
    upload(storage, private, {"p.txt": b"private"}, **{"content-type": "text/plain"})
    out = tmp_path / "storage"
    mirrors = [sm.mirror_bucket(storage_api, settings(storage_api, b), out, log=lambda _: None)
               for b in (public, private)]
    path, info = sm.write_storage_manifest(out, mirrors)

    assert path == "storage/manifest.json" and info["sha256"] == sha256_file(out / "manifest.json")
    buckets = json.loads((out / "manifest.json").read_text())["buckets"]
    assert (buckets[public]["settings"]["public"], buckets[public]["settings"]["file_size_limit"],
            buckets[public]["settings"]["allowed_mime_types"]) == (True, 1024 * 1024, ["image/png", "text/*"])
    assert buckets[private]["settings"]["public"] is False
    assert buckets[public]["objects"] == [] and (out / public).is_dir() and not any((out / public).iterdir())
    assert [o["name"] for o in buckets[private]["objects"]] == ["p.txt"]
    assert_private(out)


# ------------------------------------------------------------------ incremental

def test_second_mirror_links_unchanged_objects_and_downloads_nothing(storage, storage_api,
                                                                     new_bucket, storage_faults, tmp_path):
    bucket = new_bucket()
    objects = {f"dir/{i}.bin": os.urandom(1000 + i) for i in range(20)} | {"empty": b""}
    upload(storage, bucket, objects)
    first = mirror(storage_api, bucket, tmp_path / "b1" / "storage")
    downloads = storage_faults.download_count

    second = mirror(storage_api, bucket, tmp_path / "b2" / "storage", previous=tmp_path / "b1" / "storage")
    assert storage_faults.download_count == downloads and second.downloaded_bytes == 0
    assert second.linked == len(objects) and second.files == first.files
    for name in objects:
        a, b = (tmp_path / f"b{i}" / "storage" / bucket / name for i in (1, 2))
        assert a.stat().st_ino == b.stat().st_ino
    assert_private(tmp_path / "b2" / "storage")

    # a changed and a new object are downloaded, the rest still linked
    storage.from_(bucket).upload("dir/0.bin", b"changed", {"upsert": "true"})
    storage.from_(bucket).upload("new.txt", b"new")
    third = mirror(storage_api, bucket, tmp_path / "b3" / "storage", previous=tmp_path / "b2" / "storage")
    assert sorted(storage_faults.downloads[downloads:]) == [f"{bucket}/dir/0.bin", f"{bucket}/new.txt"]
    assert third.linked == len(objects) - 1 and third.downloaded_bytes == len(b"changed") + len(b"new")
    assert (tmp_path / "b3" / "storage" / bucket / "dir" / "0.bin").read_bytes() == b"changed"

    # a previous copy that no longer matches its SHA-256 is not shared: it is downloaded again
    rotten = tmp_path / "b3" / "storage" / bucket / "dir" / "1.bin"
    rotten.unlink()
    rotten.write_bytes(b"bit rot")
    before = storage_faults.download_count
    fourth = mirror(storage_api, bucket, tmp_path / "b4" / "storage", previous=tmp_path / "b3" / "storage")
    assert storage_faults.downloads[before:] == [f"{bucket}/dir/1.bin"]
    assert (tmp_path / "b4" / "storage" / bucket / "dir" / "1.bin").read_bytes() == objects["dir/1.bin"]
    assert fourth.linked == len(objects)  # all but the rotten one (new.txt included)

    # deleting a backup leaves the others whole
    shutil.rmtree(tmp_path / "b1")
    shutil.rmtree(tmp_path / "b3")
    assert files_under(tmp_path / "b2" / "storage" / bucket) == objects


# ------------------------------------------------------------------ failures

def test_transient_503s_are_retried(storage, storage_api, new_bucket, storage_faults, tmp_path):
    bucket = new_bucket()
    upload(storage, bucket, {"flaky.txt": b"eventually", "fine.txt": b"fine"})
    storage_faults.fail_next("GET", rf"^/object/authenticated/{bucket}/flaky\.txt$", status=503, times=2)
    storage_faults.fail_next("POST", rf"^/object/list-v2/{bucket}$", status=503, times=1)
    result = mirror(storage_api, bucket, tmp_path / "storage")
    assert (tmp_path / "storage" / bucket / "flaky.txt").read_bytes() == b"eventually"
    assert storage_faults.downloads.count(f"{bucket}/flaky.txt") == 1 and result.missing == []


def test_a_server_that_keeps_failing_fails_the_mirror_naming_the_object(storage, storage_api,
                                                                        new_bucket, storage_faults, tmp_path):
    bucket = new_bucket()
    upload(storage, bucket, {"down.txt": b"x"})
    storage_faults.fail_next("GET", rf"^/object/authenticated/{bucket}/down\.txt$", status=503, times=10)
    with pytest.raises(sm.MirrorError, match=rf"{bucket}.*down\.txt"):
        mirror(storage_api, bucket, tmp_path / "storage")


def test_bytes_that_do_not_match_the_listing_fail_naming_the_object(storage, storage_api,
                                                                    new_bucket, monkeypatch, tmp_path):
    bucket = new_bucket()
    upload(storage, bucket, {"ok.txt": b"ok", "liar.txt": b"real bytes"})
    listed = sm.list_objects

    def lying(client, name, *args, **kwargs):
        objects = listed(client, name, *args, **kwargs)
        for o in objects:
            if o["name"] == "liar.txt":
                o["metadata"] = {**o["metadata"], "eTag": f'"{hashlib.md5(b"other bytes").hexdigest()}"'}
        return objects

    relisted = sm.listed_now

    def lying_again(*args, **kwargs):  # the server keeps saying so when asked again
        o = relisted(*args, **kwargs)
        return {**o, "metadata": {**o["metadata"], "eTag": f'"{hashlib.md5(b"other bytes").hexdigest()}"'}}

    monkeypatch.setattr(sm, "list_objects", lying)
    monkeypatch.setattr(sm, "listed_now", lying_again)
    with pytest.raises(sm.MirrorError, match=r"liar\.txt.*(MD5|eTag)"):
        mirror(storage_api, bucket, tmp_path / "storage")


def test_an_object_replaced_after_the_listing_is_copied_as_it_is_now(storage, storage_api, new_bucket, monkeypatch,
                                                                     tmp_path):
    """A user re-uploads their avatar while the backup runs: its bytes no longer match the listing,
    so it is listed again and copied as it is now (it failed the whole bucket before)."""
    bucket = new_bucket()
    upload(storage, bucket, {"avatar.png": b"old", "other.txt": b"other"})
    listed = sm.list_objects

    def then_replace(client, name, *args, **kwargs):
        objects = listed(client, name, *args, **kwargs)
        upload(storage, bucket, {"avatar.png": b"the new avatar"}, upsert="true")
        return objects

    monkeypatch.setattr(sm, "list_objects", then_replace)
    result = mirror(storage_api, bucket, tmp_path / "storage")
    assert files_under(tmp_path / "storage" / bucket) == {"avatar.png": b"the new avatar", "other.txt": b"other"}
    entry = next(o for o in result.objects if o["name"] == "avatar.png")
    assert entry["size"] == len(b"the new avatar") and entry["etag"] == f'"{hashlib.md5(b"the new avatar").hexdigest()}"'


def test_objects_deleted_after_the_listing_are_recorded_as_missing(storage, storage_api,
                                                                   new_bucket, storage_faults, monkeypatch, tmp_path):
    bucket = new_bucket()
    upload(storage, bucket, {"stays.txt": b"stays", "gone.txt": b"gone", "ghost.txt": b"ghost"})
    listed = sm.list_objects

    def then_delete(client, name, *args, **kwargs):
        objects = listed(client, name, *args, **kwargs)
        client.remove(name, ["gone.txt"])  # the real 404: HTTP 400 with statusCode "404"
        return objects

    monkeypatch.setattr(sm, "list_objects", then_delete)
    storage_faults.fail_next("GET", rf"^/object/(info/)?authenticated/{bucket}/ghost\.txt$", status=404, times=5)  # a bare 404
    result = mirror(storage_api, bucket, tmp_path / "storage")
    assert result.missing == ["ghost.txt", "gone.txt"]
    assert files_under(tmp_path / "storage" / bucket) == {"stays.txt": b"stays"}
    assert set(result.files) == {f"storage/{bucket}/stays.txt"}
    entries = {o["name"]: o for o in json.loads((tmp_path / "storage" / "manifest.json").read_text())
               ["buckets"][bucket]["objects"]}
    assert entries["gone.txt"]["missing"] is True and "sha256" not in entries["gone.txt"]


def test_keys_s3_tools_make_are_kept_inside_the_bucket_folder_and_restored(storage, storage_api, stack_env,
                                                                         new_bucket, tmp_path):
    """Storage keeps any key: a `photos/` folder marker (S3 tools make them), doubled, leading and
    `.`/`..` segments. Each is backed up to a path of its own inside the bucket's folder (one of
    them failed the whole bucket before) and restored under its exact name."""
    import httpx

    from supabackup_pipeline.core import storage_restore as sr

    bucket = new_bucket()
    keys = {"photos/": b"", "photos/cat.png": b"cat", "a//b.txt": b"ab", "/lead.txt": b"lead", "x/./y.txt": b"dot",
            "x/../y.txt": b"dotdot", "..": b"up", "../evil.txt": b"evil"}
    key = stack_env["SUPABASE_SERVICE_ROLE_KEY"]
    with httpx.Client(base_url=stack_env["SUPABASE_URL"] + "/storage/v1",
                      headers={"apikey": key, "Authorization": f"Bearer {key}"}) as http:
        for name, data in keys.items():
            http.post(StorageApi.path("object", bucket, name=name), content=data,
                      headers={"content-type": "text/plain"}).raise_for_status()
    out = tmp_path / "backup" / "storage"

    result = mirror(storage_api, bucket, out)

    paths = {o["name"]: o["path"] for o in result.objects}
    assert paths == {"photos/": "photos/~empty", "photos/cat.png": "photos/cat.png", "a//b.txt": "a/~empty/b.txt",
                     "/lead.txt": "~empty/lead.txt", "x/./y.txt": "x/~dot/y.txt", "x/../y.txt": "x/~dotdot/y.txt",
                     "..": "~dotdot~1", "../evil.txt": "~dotdot/evil.txt"}
    assert files_under(out / bucket) == {paths[name]: data for name, data in keys.items()}
    assert [p for p in tmp_path.rglob("*") if not p.is_relative_to(out)] == [tmp_path / "backup"]

    storage_api.remove(bucket, list(keys))
    restore = sr.plan_storage_restore(storage_api, out, [bucket], log=lambda _: None)
    sr.apply_storage_restore(storage_api, restore, out, log=lambda _: None)
    downloaded = {}
    for name in keys:
        chunks: list[bytes] = []
        storage_api.download(bucket, name, chunks.append)
        downloaded[name] = b"".join(chunks)
    assert downloaded == keys
    assert sorted(o["name"] for o in sm.list_objects(storage_api, bucket, FAST, lambda _: None)) == sorted(keys)


@pytest.mark.parametrize("name", ["public", "authenticated", "info"])
def test_buckets_named_like_the_apis_own_routes_are_backed_up_and_restored_whole(storage, storage_api, new_bucket,
                                                                                 tmp_path, name):
    """`GET /object/public/avatars/u1.png` is the public route of bucket `avatars`, not bucket
    `public`'s object (the real server routes it so too): objects in folders of such a bucket were
    recorded as deleted since the listing, and the backup still said valid. Downloads and info go
    through the `authenticated` routes, which name the bucket unambiguously."""
    from supabackup_pipeline.core import storage_restore as sr

    bucket = new_bucket(name)
    objects = {"avatars/u1.png": b"u1", "top.txt": b"top"}
    upload(storage, bucket, objects, **{"x-upsert": "true"})
    out = tmp_path / "storage"
    result = mirror(storage_api, bucket, out)
    assert result.missing == [] and files_under(out / bucket) == objects

    storage_api.remove(bucket, list(objects))
    sr.apply_storage_restore(storage_api, sr.plan_storage_restore(storage_api, out, [bucket], log=lambda _: None), out,
                             log=lambda _: None)
    assert sr.validate_storage(storage_api, out, [bucket]) == []
    assert {o["name"] for o in sm.list_objects(storage_api, bucket, FAST, lambda _: None)} == set(objects)


@pytest.mark.parametrize("evil", ["a\\..\\evil.txt", "nul\x00evil.txt"])
def test_names_storage_itself_refuses_are_refused_and_nothing_is_written(storage, storage_api,
                                                                         new_bucket, storage_faults, tmp_path, evil):
    bucket = new_bucket()
    upload(storage, bucket, {"innocent.txt": b"innocent"})
    storage_faults.inject_listing(bucket, [evil])
    out = tmp_path / "backup" / "storage"
    with pytest.raises(UnsafeName) as refused:
        mirror(storage_api, bucket, out)
    assert bucket in str(refused.value) and repr(evil) in str(refused.value)
    assert storage_faults.download_count == 0
    assert [p for p in tmp_path.rglob("*")] == []  # not even the bucket folder


def test_unsafe_bucket_names_are_refused_and_dot_names_get_a_folder_of_their_own():
    for bad in ["", "a/b", "a\\b", "nul\x00"]:
        with pytest.raises(UnsafeName):
            sm.bucket_dir(bad)
    assert sm.bucket_dir("manifest.json") == "manifest.json~bucket"  # our own manifest's name
    assert sm.bucket_dir(".") == ".~bucket" and sm.bucket_dir("..") == "..~bucket"
    assert sm.bucket_dir("my bucket (1)") == "my bucket (1)"


def test_file_and_folder_of_the_same_name_are_both_kept(storage, storage_api, new_bucket, tmp_path):
    bucket = new_bucket()
    objects = {"a": b"file a", "a/b": b"file a/b", "x/y": b"y", "x/y/z": b"z"}
    upload(storage, bucket, objects)
    result = mirror(storage_api, bucket, tmp_path / "storage")
    paths = {o["name"]: o["path"] for o in result.objects}
    assert paths == {"a": "a~1", "a/b": "a/b", "x/y": "x/y~1", "x/y/z": "x/y/z"}
    for o in result.objects:
        assert (tmp_path / "storage" / bucket / o["path"]).read_bytes() == objects[o["name"]]


def test_path_plan_escapes_without_collisions_and_shortens_long_segments():
    plan = sm.plan_paths("b", ["a", "a/b", "a~1", "Case/A", "case/b", "l" * 300 + "/f", "x//y", "x/~empty/y"])
    assert plan["a"] == "a~2" and plan["a~1"] == "a~1" and plan["a/b"] == "a/b"
    assert plan["x//y"] == "x/~empty/y" and plan["x/~empty/y"] == "x/~empty/y~1"  # one path, two names
    assert plan["Case/A"] == "Case/A" and plan["case/b"] == "case/b"
    long = plan["l" * 300 + "/f"].split("/")[0]
    assert len(long.encode()) <= 255 and long.startswith("l" * 200 + "~")


def test_downloads_are_streamed_in_chunks_and_names_quoted_exactly(storage, storage_api, new_bucket):
    """Memory stays flat: an object arrives in chunks of at most CHUNK bytes, never whole."""
    bucket = new_bucket()
    name = f"dir ?/{PUNCTUATION} big.bin"
    data = os.urandom(2 * CHUNK + 5)
    upload(storage, bucket, {name: data})
    chunks: list[bytes] = []
    storage_api.download(bucket, name, chunks.append)
    assert b"".join(chunks) == data and len(chunks) >= 3 and max(map(len, chunks)) <= CHUNK
    assert storage_api.info(bucket, name)["name"] == name


# ------------------------------------------------------------------ the Dagster asset

def test_storage_asset_writes_its_part_and_links_from_the_previous_backup(storage, new_bucket, stack_env, tmp_path):
    bucket = new_bucket()
    objects = {"docs/readme.md": b"# hi", "img/logo.png": os.urandom(5000)}
    upload(storage, bucket, objects)
    asset = build_storage_mirror([bucket])
    resources = {"storage": SupabaseStorage(url=stack_env["SUPABASE_URL"],
                                            service_role_key=stack_env["SUPABASE_SERVICE_ROLE_KEY"]),
                 "backups": BackupStorage(backup_path=str(tmp_path / "backups"))}
    store = BackupStore((tmp_path / "backups").resolve())
    instance = dg.DagsterInstance.ephemeral()
    first, second = "20260101T000000Z", "20260102T000000Z"
    instance.add_dynamic_partitions(BACKUP_PARTITIONS_NAME, [first, second])

    # everything (`storage_buckets`): every bucket that exists now, and the discovery cache learns them
    result = dg.materialize([asset], partition_key=first, instance=instance, resources=resources)
    assert result.success
    part = store.read_parts(first)["storage"]
    assert part["complete"] is True and "storage/manifest.json" in part["files"]
    for rel, entry in part["files"].items():
        assert sha256_file(store.staging(first) / rel) == entry["sha256"]
    assert {f"storage/{bucket}/{n}" for n in objects} <= set(part["files"])
    assert bucket in read_catalog(store.state_dir)["buckets"]
    keys = {event.materialization.asset_key for event in result.get_asset_materialization_events()}
    assert {STORAGE_BUCKETS_KEY, bucket_key(bucket)} <= keys
    write_manifest_and_publish(store, first)

    # one bucket only, a day later: unchanged objects come from the first backup as hard links
    result = dg.materialize([asset], partition_key=second, instance=instance, resources=resources,
                            selection=[bucket_key(bucket)])
    assert result.success
    [event] = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert event.materialization.asset_key == bucket_key(bucket)
    assert (meta["objects"].value, meta["linked"].value, meta["downloaded_bytes"].value) == (2, 2, 0)
    part = store.read_parts(second)["storage"]
    assert part["complete"] is False and part["previous_backup"] == first
    assert [b["bucket"] for b in part["buckets"]] == [bucket]
    old, new = (store.published(first) / "storage" / bucket, store.staging(second) / "storage" / bucket)
    assert (old / "img/logo.png").stat().st_ino == (new / "img/logo.png").stat().st_ino
