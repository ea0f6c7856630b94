"""Contract of the Storage API stand-in: each test pins one fact observed on Supabase's storage-api
1.11.2, through the official client where it can say it, and through raw HTTP where the fact is
about the wire (status codes, headers, raw keys).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import httpx
import jwt
import psycopg
import pytest
from psycopg.rows import dict_row
from storage3.exceptions import StorageApiError

API = "/storage/v1"


# ------------------------------------------------------------------ helpers and fixtures

@pytest.fixture
def storage(supabase_client):
    return supabase_client.storage


@pytest.fixture
def http(stack_env):
    """Raw HTTP with the service role key, as the official client sends it (Bearer + apikey)."""
    key = stack_env["SUPABASE_SERVICE_ROLE_KEY"]
    with httpx.Client(base_url=stack_env["SUPABASE_URL"] + API,
                      headers={"Authorization": f"Bearer {key}", "apikey": key}, timeout=30) as client:
        yield client


@pytest.fixture
def anonymous(stack_env):
    with httpx.Client(base_url=stack_env["SUPABASE_URL"] + API, timeout=30) as client:
        yield client


def _new_bucket(storage, created, **options) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    storage.create_bucket(name, options=options or None)
    created.append(name)
    return name


@pytest.fixture
def buckets(storage):
    """Makes unique buckets (`buckets(public=True, ...)`) and removes them after the test."""
    created: list[str] = []
    yield lambda **options: _new_bucket(storage, created, **options)
    for name in created:
        try:
            storage.empty_bucket(name)
            storage.delete_bucket(name)
        except StorageApiError:
            pass  # the test deleted it


@pytest.fixture
def bucket(buckets) -> str:
    return buckets()


def object_row(stack_env, bucket: str, name: str) -> dict | None:
    with psycopg.connect(stack_env["SUPABASE_DB_URL"], row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM storage.objects WHERE bucket_id = %s AND name = %s",
                            (bucket, name)).fetchone()


def url(bucket: str, name: str, route: str = "object") -> str:
    return f"/{route}/{bucket}/{quote(name, safe='/')}"


def error_body(response: httpx.Response) -> dict:
    """storage-api's errors: HTTP 400, the real status as a string in the body."""
    assert response.status_code == 400, response.text
    return response.json()


def all_v2_names(files, prefix: str = "") -> list[str]:
    names, cursor = [], None
    while True:
        options = {"prefix": prefix, **({"cursor": cursor} if cursor else {})}
        page = files.list_v2(options)
        names += [o.name for o in page.objects]
        if not page.hasNext:
            return names
        cursor = page.nextCursor


# ------------------------------------------------------------------ auth and error shape

def test_missing_or_invalid_jwt_is_refused_with_a_400(anonymous, stack):
    missing = error_body(anonymous.get("/bucket"))
    assert missing["statusCode"] in ("400", "403") and missing["error"] == "Unauthorized"

    forged = jwt.encode({"role": "service_role"}, "not-the-secret-but-just-as-long-as-one", algorithm="HS256")
    invalid = error_body(anonymous.get("/bucket", headers={"Authorization": f"Bearer {forged}"}))
    assert invalid == {"statusCode": "403", "error": "Unauthorized", "message": "invalid signature"}

    garbage = error_body(anonymous.get("/bucket", headers={"Authorization": "Bearer not.a.jwt"}))
    assert garbage["error"] == "Unauthorized"


def test_service_role_jwt_with_apikey_header_is_accepted(http):
    response = http.get("/bucket")
    assert response.status_code == 200 and isinstance(response.json(), list)


def test_errors_are_http_400_with_the_real_status_in_the_body(http, bucket):
    assert error_body(http.get(url(bucket, "missing.txt"))) == {
        "statusCode": "404", "error": "not_found", "message": "Object not found"}
    missing_bucket = {"statusCode": "404", "error": "Bucket not found", "message": "Bucket not found"}
    assert error_body(http.get("/bucket/no-such-bucket-" + uuid.uuid4().hex)) == missing_bucket
    assert error_body(http.post(url("no-such-bucket-" + uuid.uuid4().hex, "x.txt"), content=b"x")) == missing_bucket


# ------------------------------------------------------------------ buckets

def test_bucket_list_items_have_the_real_fields(http, buckets):
    name = buckets(public=True, file_size_limit=1000, allowed_mime_types=["image/*"])
    item = next(b for b in http.get("/bucket").json() if b["id"] == name)
    assert set(item) == {"id", "name", "owner", "public", "type", "file_size_limit", "allowed_mime_types",
                         "created_at", "updated_at"}
    assert (item["name"], item["public"], item["type"]) == (name, True, "STANDARD")
    assert item["file_size_limit"] == 1000 and item["allowed_mime_types"] == ["image/*"]
    assert isinstance(item["owner"], str)
    datetime.fromisoformat(item["created_at"].replace("Z", "+00:00"))


def test_bucket_create_get_update_delete(storage, http):
    name = f"t-{uuid.uuid4().hex[:12]}"
    created = http.post("/bucket", json={"id": name, "name": name, "public": False,
                                         "file_size_limit": None, "allowed_mime_types": None})
    assert created.status_code == 200 and created.json() == {"name": name}
    assert storage.get_bucket(name).public is False

    assert storage.update_bucket(name, {"public": True, "file_size_limit": 42,
                                        "allowed_mime_types": ["text/plain"]}) == {"message": "Successfully updated"}
    got = storage.get_bucket(name)
    assert (got.public, got.file_size_limit, got.allowed_mime_types) == (True, 42, ["text/plain"])

    assert storage.delete_bucket(name) == {"message": "Successfully deleted"}
    with pytest.raises(StorageApiError) as exc:
        storage.get_bucket(name)
    assert (exc.value.status, exc.value.message) == ("404", "Bucket not found")


def test_creating_an_existing_bucket_is_a_409(storage, bucket):
    with pytest.raises(StorageApiError) as exc:
        storage.create_bucket(bucket)
    assert (exc.value.status, exc.value.code) == ("409", "Duplicate")


def test_non_empty_bucket_delete_is_a_409_until_emptied(storage, bucket):
    storage.from_(bucket).upload("a/b.txt", b"x")
    with pytest.raises(StorageApiError) as exc:
        storage.delete_bucket(bucket)
    assert exc.value.status == "409"
    assert storage.empty_bucket(bucket) == {"message": "Successfully emptied"}
    assert storage.from_(bucket).list_v2().objects == []
    assert storage.delete_bucket(bucket) == {"message": "Successfully deleted"}


# ------------------------------------------------------------------ uploads

def test_duplicate_upload_is_a_409(storage, bucket):
    files = storage.from_(bucket)
    files.upload("dup.txt", b"one")
    with pytest.raises(StorageApiError) as exc:
        files.upload("dup.txt", b"two")
    assert (exc.value.status, exc.value.code, exc.value.message) == (
        "409", "Duplicate", "The resource already exists")
    assert files.download("dup.txt") == b"one"


def test_disallowed_mime_type_is_a_415_and_wildcards_allow(storage, buckets):
    files = storage.from_(buckets(allowed_mime_types=["image/*", "application/pdf"]))
    files.upload("ok.png", b"png", {"content-type": "image/png"})
    files.upload("ok.pdf", b"pdf", {"content-type": "application/pdf"})
    with pytest.raises(StorageApiError) as exc:
        files.upload("no.txt", b"text", {"content-type": "text/plain"})
    assert exc.value.status == "415"


def test_object_over_the_bucket_size_limit_is_a_413(storage, buckets):
    files = storage.from_(buckets(file_size_limit=10))
    files.upload("small.bin", b"0123456789")
    with pytest.raises(StorageApiError) as exc:
        files.upload("big.bin", b"0123456789A")
    assert exc.value.status == "413"


def test_multipart_upload_fills_metadata_like_the_real_server(storage, bucket, stack_env):
    data = b"hello multipart"
    result = storage.from_(bucket).upload("dir/m.txt", data, {
        "content-type": "text/csv", "cache-control": "60", "metadata": {"owner": "me", "n": 1}})
    assert result.full_path == f"{bucket}/dir/m.txt"

    row = object_row(stack_env, bucket, "dir/m.txt")
    meta = row["metadata"]
    assert meta["eTag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert (meta["size"], meta["contentLength"], meta["httpStatusCode"]) == (len(data), len(data), 200)
    assert (meta["mimetype"], meta["cacheControl"]) == ("text/csv", "max-age=60")
    datetime.fromisoformat(meta["lastModified"].replace("Z", "+00:00"))
    assert row["user_metadata"] == {"owner": "me", "n": 1}
    uuid.UUID(row["version"])


def test_raw_body_upload_uses_headers(http, bucket, stack_env):
    x_metadata = base64.b64encode(json.dumps({"from": "raw"}).encode()).decode()
    response = http.post(url(bucket, "raw.json"), content=b'{"a": 1}', headers={
        "content-type": "application/json; charset=utf-8", "cache-control": "public, max-age=120, immutable",
        "x-metadata": x_metadata})
    assert response.status_code == 200
    body = response.json()
    assert body["Key"] == f"{bucket}/raw.json"
    row = object_row(stack_env, bucket, "raw.json")
    assert str(row["id"]) == body["Id"]
    # storage-api's Uploader keeps a raw body's headers as sent
    assert (row["metadata"]["mimetype"], row["metadata"]["cacheControl"]) == (
        "application/json; charset=utf-8", "public, max-age=120, immutable")
    assert row["user_metadata"] == {"from": "raw"}

    no_cache = http.post(url(bucket, "raw2.bin"), content=b"x", headers={"content-type": "application/octet-stream"})
    assert no_cache.status_code == 200
    assert object_row(stack_env, bucket, "raw2.bin")["metadata"]["cacheControl"] == "no-cache"


def test_multipart_content_type_is_the_parts_type_or_the_content_type_field(http, bucket, stack_env):
    """busboy gives the part's type/subtype without parameters; a `contentType` field wins as sent."""
    http.post(url(bucket, "part.txt"), files={"file": ("part.txt", b"x", "text/plain;charset=UTF-8")},
              data={"cacheControl": "60"}).raise_for_status()
    http.post(url(bucket, "field.txt"), files={"file": ("field.txt", b"x", "text/plain")},
              data={"contentType": "text/plain;charset=UTF-8"}).raise_for_status()
    assert (object_row(stack_env, bucket, "part.txt")["metadata"]["mimetype"],
            object_row(stack_env, bucket, "part.txt")["metadata"]["cacheControl"]) == ("text/plain", "max-age=60")
    assert object_row(stack_env, bucket, "field.txt")["metadata"]["mimetype"] == "text/plain;charset=UTF-8"


def test_upsert_replaces_with_a_new_version(storage, bucket, stack_env):
    files = storage.from_(bucket)
    files.upload("u.txt", b"first")
    before = object_row(stack_env, bucket, "u.txt")
    files.upload("u.txt", b"second!", {"upsert": "true"})
    after = object_row(stack_env, bucket, "u.txt")
    assert files.download("u.txt") == b"second!"
    assert after["id"] == before["id"] and after["version"] != before["version"]
    assert after["metadata"]["size"] == 7


def test_update_replaces_existing_and_404s_on_missing(storage, bucket):
    files = storage.from_(bucket)
    files.upload("p.txt", b"old")
    files.update("p.txt", b"new")
    assert files.download("p.txt") == b"new"
    with pytest.raises(StorageApiError) as exc:
        files.update("absent.txt", b"x")
    assert (exc.value.status, exc.value.code) == ("404", "not_found")


def test_zero_byte_object(storage, bucket, http, stack_env):
    files = storage.from_(bucket)
    files.upload("empty.bin", b"")
    assert files.download("empty.bin") == b""
    assert object_row(stack_env, bucket, "empty.bin")["metadata"]["size"] == 0
    assert http.get(url(bucket, "empty.bin")).headers["content-length"] == "0"


# ------------------------------------------------------------------ downloads and info

def test_download_headers(storage, bucket, http):
    data = b"0123456789A"
    storage.from_(bucket).upload("h/d.txt", data, {"content-type": "text/plain", "cache-control": "300"})
    response = http.get(url(bucket, "h/d.txt"))
    assert response.status_code == 200 and response.content == data
    headers = response.headers
    assert headers["content-type"] == "text/plain"
    assert headers["content-length"] == str(len(data))
    assert headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert headers["cache-control"] == "max-age=300"
    assert parsedate_to_datetime(headers["last-modified"]).tzinfo is not None


def test_range_download_is_a_206(storage, bucket, http):
    storage.from_(bucket).upload("r.bin", b"0123456789A")
    response = http.get(url(bucket, "r.bin"), headers={"Range": "bytes=2-5"})
    assert response.status_code == 206
    assert response.content == b"2345"
    assert response.headers["content-range"] == "bytes 2-5/11"


def test_client_download_uses_the_plain_object_route(storage, bucket, storage_faults):
    storage.from_(bucket).upload("via.txt", b"v")
    # Only the plain route fails: if the client used /object/authenticated/... it would not see it.
    storage_faults.fail_next("GET", rf"^/object/{bucket}/via\.txt$", status=503)
    with pytest.raises(StorageApiError) as exc:
        storage.from_(bucket).download("via.txt")
    assert str(exc.value.status) == "503"


def test_authenticated_route_serves_with_a_jwt(storage, bucket, http, anonymous):
    storage.from_(bucket).upload("auth.txt", b"secret")
    assert http.get(url(bucket, "auth.txt", "object/authenticated")).content == b"secret"
    assert error_body(anonymous.get(url(bucket, "auth.txt", "object/authenticated")))["error"] == "Unauthorized"


def test_public_route_only_for_public_buckets_and_needs_no_jwt(storage, buckets, anonymous):
    public, private = buckets(public=True), buckets(public=False)
    storage.from_(public).upload("p.txt", b"open")
    storage.from_(private).upload("p.txt", b"closed")
    assert anonymous.get(url(public, "p.txt", "object/public")).content == b"open"
    assert error_body(anonymous.get(url(private, "p.txt", "object/public")))["statusCode"] == "404"


def test_info_returns_the_object_summary(storage, bucket, http, stack_env):
    storage.from_(bucket).upload("i/n.txt", b"info!", {"content-type": "text/plain", "metadata": {"k": "v"}})
    info = storage.from_(bucket).info("i/n.txt")
    row = object_row(stack_env, bucket, "i/n.txt")
    assert info["id"] == str(row["id"]) and info["version"] == row["version"]
    assert (info["name"], info["bucket_id"], info["size"]) == ("i/n.txt", bucket, 5)
    assert (info["content_type"], info["cache_control"]) == ("text/plain", "max-age=3600")
    assert info["etag"] == f'"{hashlib.md5(b"info!").hexdigest()}"'
    assert info["metadata"] == {"k": "v"}
    assert info["last_modified"] and info["created_at"]
    assert http.get(url(bucket, "i/n.txt", "object/info/authenticated")).json() == info
    assert storage.from_(bucket).exists("i/n.txt") and not storage.from_(bucket).exists("i/none.txt")


# ------------------------------------------------------------------ list v1

def test_list_v1_is_one_level_with_null_folders(storage, bucket):
    files = storage.from_(bucket)
    for name in ("top.txt", "dir/a.txt", "dir/sub/b.txt", "other/c.txt"):
        files.upload(name, b"x")
    root = files.list()
    assert [(e["name"], e["id"]) for e in root if e["id"] is None] == [("dir", None), ("other", None)]
    folder = next(e for e in root if e["name"] == "dir")
    assert folder["metadata"] is None and folder["updated_at"] is None and folder["created_at"] is None
    top = next(e for e in root if e["name"] == "top.txt")
    assert top["id"] and top["metadata"]["size"] == 1
    assert {"updated_at", "created_at", "last_accessed_at"} <= set(top)

    inside = files.list("dir")
    assert [(e["name"], e["id"] is None) for e in inside] == [("sub", True), ("a.txt", False)]
    assert len(files.list("", {"limit": 2})) == 2


def test_list_v1_folds_case(storage, bucket):
    files = storage.from_(bucket)
    files.upload("Case/A.txt", b"1")
    files.upload("case/b.txt", b"2")
    assert [e["name"] for e in files.list()] == ["Case"]
    assert sorted(e["name"] for e in files.list("Case/")) == ["A.txt", "b.txt"]


# ------------------------------------------------------------------ list v2

def test_list_v2_is_recursive_case_exact_and_in_byte_order(storage, bucket):
    files = storage.from_(bucket)
    names = ["b.txt", "B.txt", "a/z.txt", "a/B/y.txt", "a_b.txt", "a.txt", "Z/1.txt", "a/b/x.txt"]
    for name in names:
        files.upload(name, b"x")
    page = files.list_v2()
    assert [o.name for o in page.objects] == sorted(names, key=lambda n: n.encode())
    assert page.folders == [] and page.hasNext is False
    assert all(o.id and o.metadata["size"] == 1 for o in page.objects)
    assert [o.name for o in files.list_v2({"prefix": "a/"}).objects] == ["a/B/y.txt", "a/b/x.txt", "a/z.txt"]
    assert [o.name for o in files.list_v2({"prefix": "a/b/"}).objects] == ["a/b/x.txt"]


def test_list_v2_with_delimiter_is_one_level(storage, bucket):
    files = storage.from_(bucket)
    for name in ("r.txt", "d/one.txt", "d/e/two.txt", "f/three.txt"):
        files.upload(name, b"x")
    root = files.list_v2({"with_delimiter": True})
    assert [f.name.rstrip("/").rsplit("/", 1)[-1] for f in root.folders] == ["d", "f"]
    assert [o.name for o in root.objects] == ["r.txt"]
    inner = files.list_v2({"with_delimiter": True, "prefix": "d/"})
    assert [f.name for f in inner.folders] == ["d/e/"]
    assert [o.name for o in inner.objects] == ["d/one.txt"]


def test_list_v2_pages_over_1000_objects_with_a_cursor(bucket, http, storage):
    names = [f"p/{i:05d}-{uuid.uuid4().hex[:4]}.txt" for i in range(1205)]

    def put(name: str) -> int:
        return http.post(url(bucket, name), content=b"x", headers={"content-type": "text/plain"}).status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(put, names)) == {200}

    files = storage.from_(bucket)
    first = files.list_v2({"limit": 5000})
    assert len(first.objects) == 1000 and first.hasNext and first.nextCursor
    second = files.list_v2({"cursor": first.nextCursor})
    assert len(second.objects) == 205 and not second.hasNext
    assert [o.name for o in first.objects + second.objects] == sorted(names)
    small = files.list_v2({"limit": 500, "prefix": "p/"})
    assert len(small.objects) == 500 and small.hasNext
    assert all_v2_names(files) == sorted(names)
    # v1 on the same bucket: 100 entries by default, more when asked, and offset pages
    assert len(files.list("p")) == 100
    assert len(files.list("p", {"limit": 1300})) == 1205
    assert [e["name"] for e in files.list("p", {"limit": 2, "offset": 1204})] == [sorted(names)[-1][2:]]


# ------------------------------------------------------------------ delete, move, copy

def test_delete_many_returns_only_what_it_deleted(storage, bucket):
    files = storage.from_(bucket)
    files.upload("k/1.txt", b"1")
    files.upload("k/2.txt", b"2")
    deleted = files.remove(["k/1.txt", "k/missing.txt", "k"])
    assert [row["name"] for row in deleted] == ["k/1.txt"]
    assert deleted[0]["bucket_id"] == bucket and deleted[0]["id"]
    assert [o.name for o in files.list_v2().objects] == ["k/2.txt"]
    assert files.remove(["k/1.txt"]) == []


def test_delete_single_object_route(storage, bucket, http):
    storage.from_(bucket).upload("one.txt", b"1")
    assert http.delete(url(bucket, "one.txt")).json() == {"message": "Successfully deleted"}
    assert error_body(http.delete(url(bucket, "one.txt")))["statusCode"] == "404"


def test_move_and_copy(storage, bucket):
    files = storage.from_(bucket)
    files.upload("m/src.txt", b"payload")
    files.copy("m/src.txt", "m/copy.txt")
    files.move("m/src.txt", "m/moved.txt")
    assert [o.name for o in files.list_v2().objects] == ["m/copy.txt", "m/moved.txt"]
    assert files.download("m/copy.txt") == files.download("m/moved.txt") == b"payload"
    with pytest.raises(StorageApiError) as exc:
        files.move("m/copy.txt", "m/moved.txt")
    assert exc.value.status == "409"


# ------------------------------------------------------------------ keys

@pytest.mark.parametrize("key", ["naïve.txt", "日本.txt", "100%.txt", "hash#tag.txt", "back\\slash.txt",
                                 'quote".txt', "lt<.txt", "tab\t.txt"])
def test_invalid_keys_are_refused(http, bucket, key):
    response = http.post(url(bucket, key), content=b"x", headers={"content-type": "text/plain"})
    assert error_body(response) == {"statusCode": "400", "error": "InvalidKey", "message": f"Invalid key: {key}"}


def test_every_allowed_punctuation_mark_is_a_valid_key(storage, bucket):
    key = "all/_!.*'() &$=@;:+,?-.txt"
    storage.from_(bucket).upload(key, b"ok")
    assert storage.from_(bucket).download(key) == b"ok"
    assert [o.name for o in storage.from_(bucket).list_v2().objects] == [key]


@pytest.mark.parametrize("name", ["what?.txt", "with space.txt", "a&b.txt", "semi;colon.txt", "plus+sign.txt",
                                  "dir ?/x&y;z+w.txt"])
def test_percent_encoded_names_round_trip_through_the_client(storage, bucket, name):
    files = storage.from_(bucket)
    files.upload(name, name.encode())
    assert [o.name for o in files.list_v2().objects] == [name]
    assert files.download(name) == name.encode()
    assert files.info(name)["name"] == name


def test_a_raw_plus_in_the_path_stays_a_plus(http, bucket, storage):
    assert http.post(f"/object/{bucket}/raw+plus.txt", content=b"+", headers={"content-type": "text/plain"}
                     ).json()["Key"] == f"{bucket}/raw+plus.txt"
    assert [o.name for o in storage.from_(bucket).list_v2().objects] == ["raw+plus.txt"]


def test_client_decodes_percent_escapes_and_rejects_dot_segments(storage, bucket):
    """Client facts (storage3 2.34.1), pinned: the server never sees `%41` or `..`."""
    files = storage.from_(bucket)
    files.upload("pct%41.txt", b"x")
    assert [o.name for o in files.list_v2().objects] == ["pctA.txt"]
    with pytest.raises(ValueError):
        files.upload("../escape.txt", b"x")


def test_names_are_case_sensitive(storage, bucket):
    files = storage.from_(bucket)
    files.upload("Case/A.txt", b"upper")
    files.upload("case/b.txt", b"lower")
    files.upload("case/A.txt", b"other")
    assert [o.name for o in files.list_v2().objects] == ["Case/A.txt", "case/A.txt", "case/b.txt"]
    assert files.download("Case/A.txt") == b"upper" and files.download("case/A.txt") == b"other"
    assert [o.name for o in files.list_v2({"prefix": "case/"}).objects] == ["case/A.txt", "case/b.txt"]


# ------------------------------------------------------------------ faults

def test_fail_next_gives_the_status_then_serves_normally(storage, bucket, http, storage_faults):
    storage.from_(bucket).upload("f.txt", b"fine")
    storage_faults.fail_next("GET", r"/f\.txt$", status=503, times=2)
    assert http.get(url(bucket, "f.txt")).status_code == 503
    with pytest.raises(StorageApiError) as exc:
        storage.from_(bucket).download("f.txt")
    assert str(exc.value.status) == "503"
    assert storage.from_(bucket).download("f.txt") == b"fine"
    storage_faults.fail_next("POST", r"^/object/list-v2/")
    assert http.post(f"/object/list-v2/{bucket}", json={}).status_code == 503
    assert http.post(f"/object/list-v2/{bucket}", json={}).status_code == 200


def test_inject_listing_shows_raw_names_that_download_as_evil(storage, bucket, http, storage_faults):
    storage.from_(bucket).upload("real.txt", b"real")
    storage_faults.inject_listing(bucket, ["../evil.txt", "a/../../b.txt"])
    names = [o.name for o in storage.from_(bucket).list_v2().objects]
    assert sorted(names) == ["../evil.txt", "a/../../b.txt", "real.txt"]
    assert "../evil.txt" in [e["name"] for e in storage.from_(bucket).list()]
    assert http.get(f"/object/{bucket}/{quote('../evil.txt', safe='')}").content == b"evil"
    storage_faults.reset()
    assert [o.name for o in storage.from_(bucket).list_v2().objects] == ["real.txt"]


def test_download_count_counts_served_downloads_on_every_route(storage, buckets, http, anonymous, storage_faults):
    public = buckets(public=True)
    storage.from_(public).upload("c.txt", b"c")
    storage.from_(public).download("c.txt")
    http.get(url(public, "c.txt", "object/authenticated"))
    anonymous.get(url(public, "c.txt", "object/public"))
    http.head(url(public, "c.txt"))
    http.get(url(public, "missing.txt"))  # not served: not counted
    storage.from_(public).info("c.txt")  # not a download
    assert storage_faults.download_count == 4
    assert storage_faults.downloads == [f"{public}/c.txt"] * 4
