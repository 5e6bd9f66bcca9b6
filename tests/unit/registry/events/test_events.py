"""Events without a server: signatures, retry delays, filters, the shape of events."""

from __future__ import annotations

import json

import pytest

from registry.config import ConfigError, Settings, load_settings
from registry.events.build import EventBuilder, Source
from registry.events.dispatcher import retry_delay
from registry.events.signing import sign, verify
from registry.meta.changes import Change
from registry.meta.records import NewManifest
from registry.request_context import RequestInfo
from tests.support.receiver import check_signature


def test_signature_verifies_and_detects_tampering_and_age() -> None:
    body = b'{"events":[]}'
    headers = sign("s3cret", body, now=1_000_000)
    ts, sig = headers["Wharf-Timestamp"], headers["Wharf-Signature"]
    assert ts == "1000000" and sig.startswith("sha256=")
    assert verify("s3cret", ts, sig, body, now=1_000_010)
    assert not verify("other", ts, sig, body, now=1_000_010)
    assert not verify("s3cret", ts, sig, body + b" ", now=1_000_010)
    assert not verify("s3cret", ts, sig, body, now=1_000_000 + 301)
    # the test receiver's independent implementation agrees
    assert check_signature("s3cret", sign("s3cret", body), body) == "valid"
    assert check_signature("other", sign("s3cret", body), body) == "invalid"
    assert check_signature("s3cret", {}, body) == "absent"


def test_retry_delay_doubles_up_to_backoff_then_pauses_for_backoff() -> None:
    delays = [retry_delay(n, threshold=5, backoff=1.0) for n in range(1, 8)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert retry_delay(1, threshold=1, backoff=3.0) == 3.0


def test_endpoint_config_and_filters() -> None:
    settings = load_settings(
        None,
        {
            "REGISTRY_NOTIFICATIONS_ENDPOINTS": json.dumps(
                [
                    {
                        "name": "a",
                        "url": "http://x/",
                        "headers": {"Authorization": "Bearer t"},
                        "ignoredmediatypes": ["application/octet-stream"],
                        "ignore": {"actions": ["pull"], "mediatypes": ["text/x"]},
                    },
                    {"name": "b", "url": "http://y/", "disabled": True},
                ]
            )
        },
    )
    a, b = settings.notifications.endpoints
    assert b.disabled
    assert settings.notifications.active == [a]
    assert a.headers == {"Authorization": ["Bearer t"]}
    assert (a.timeout_seconds, a.threshold, a.backoff_seconds) == (1.0, 10, 1.0)
    assert a.ignores("push", "application/octet-stream")
    assert a.ignores("push", "text/x")
    assert a.ignores("pull", "application/vnd.oci.image.manifest.v1+json")
    assert not a.ignores("push", "application/vnd.oci.image.manifest.v1+json")
    assert not a.ignores("delete", "")
    assert settings.notifications.mediatype.endswith("events.v1+json")
    with pytest.raises(ConfigError):
        load_settings(
            None,
            {"REGISTRY_NOTIFICATIONS_ENDPOINTS": '[{"name":"a","url":"u"},{"name":"a","url":"v"}]'},
        )
    with pytest.raises(ConfigError):
        load_settings(
            None, {"REGISTRY_NOTIFICATIONS_ENDPOINTS": '[{"name":"a","url":"u","timeout":"1x"}]'}
        )


def test_event_shapes_follow_the_reference() -> None:
    settings = Settings.model_validate(
        {
            "http": {"host": "https://reg.example.com/"},
            "notifications": {"events": {"includereferences": True}},
        }
    )
    builder = EventBuilder(settings, Source("node:5000", "instance"))
    request = RequestInfo("rid", "10.0.0.1:1234", "internal:5000", "PUT", "docker/27", "alice")
    manifest = NewManifest(
        "sha256:m",
        "application/vnd.oci.image.manifest.v1+json",
        300,
        None,
        None,
        None,
        (("sha256:c", 2),),
        (),
        (("application/vnd.oci.image.config.v1+json", "sha256:c", 2),),
    )
    push = Change(
        "push",
        "manifest",
        "team/app",
        "sha256:m",
        manifest.media_type,
        300,
        tag="v1",
        manifest=manifest,
        request=request,
    )
    event = json.loads(builder.from_change(push, ("e",)).body)
    assert event["target"] == {
        "mediaType": manifest.media_type,
        "size": 300,
        "digest": "sha256:m",
        "length": 300,
        "repository": "team/app",
        "url": "https://reg.example.com/v2/team/app/manifests/sha256:m",
        "tag": "v1",
        "references": [
            {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "size": 2,
                "digest": "sha256:c",
            }
        ],
    }
    assert event["actor"] == {"name": "alice"}
    assert event["request"] == {
        "id": "rid",
        "addr": "10.0.0.1:1234",
        "host": "internal:5000",
        "method": "PUT",
        "useragent": "docker/27",
    }
    assert event["source"] == {"addr": "node:5000", "instanceID": "instance"}
    mount = Change("mount", "blob", "team/b", "sha256:c", size=2, from_repository="team/app")
    target = json.loads(builder.from_change(mount, ()).body)["target"]
    assert (
        target["fromRepository"] == "team/app" and target["mediaType"] == "application/octet-stream"
    )
    assert "url" in target  # http.host is set: no request needed
    delete = Change("delete", "tag", "team/app", "sha256:m", "x", 300, tag="v1")
    assert json.loads(builder.from_change(delete, ()).body)["target"] == {
        "repository": "team/app",
        "tag": "v1",
    }
    assert builder.media_type_of(delete) == ""
