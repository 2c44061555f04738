"""With REKD_API_TOKEN set, mutating endpoints need it; reading ones do not."""

from fastapi.testclient import TestClient

from backend.main import create_app
from service.settings import Settings, get_settings


def _client(tmp_path, token):
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: Settings(runs_dir=tmp_path, api_token=token)
    return TestClient(app)


def test_token_guards_mutations(tmp_path):
    c = _client(tmp_path, "s3cret")
    assert c.post("/api/runs", json={}).status_code == 401
    assert c.post("/api/runs", json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    # the right token gets through to validation (an empty body is then refused as such)
    assert c.post("/api/runs", json={}, headers={"Authorization": "Bearer s3cret"}).status_code == 422
    assert c.delete("/api/runs/some-run").status_code == 401
    assert c.get("/api/runs").status_code == 200  # reading needs no token
    assert c.get("/api/presets").status_code == 200


def test_no_token_configured_means_open_on_loopback(tmp_path):
    c = _client(tmp_path, None)
    assert c.post("/api/runs", json={}).status_code == 422


def test_the_ui_asks_for_the_token_too(tmp_path, monkeypatch):
    # otherwise the UI, which calls the API with the server's token, would launch runs for anyone
    monkeypatch.setenv("REKD_API_TOKEN", "s3cret")
    monkeypatch.setenv("REKD_RUNS_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        from rekd.app import create

        c = TestClient(create())
        assert c.get("/config").status_code == 401  # the UI's app config, before login
        assert c.post("/login", data={"username": "me", "password": "wrong"}).status_code == 400
        assert c.post("/login", data={"username": "me", "password": "s3cret"}).json() == {"success": True}
        assert c.get("/config").status_code == 200
    finally:
        get_settings.cache_clear()
