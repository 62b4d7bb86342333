"""SimVault's semantics on a manual clock: each rule as OpenBao 2.7.2 showed it.

The texts and statuses asserted here were read off a real dev server (see the module
docstring of vaultdb.testing.sim.simvault); test_simvault_conformance.py checks the same
outcomes against one.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from simclock import ManualClock

from vaultdb import errors
from vaultdb._http import TransportError, VaultHTTP
from vaultdb._vault import VaultClient, VaultSettings
from vaultdb.auth import TokenAuth
from vaultdb.testing.sim.simvault import (
    AuthMount,
    DynamicRole,
    FaultPlan,
    SimConfig,
    SimVault,
    StaticRole,
    TokenSpec,
    Window,
)

ADDR = "http://vault.sim:8200"
OTHER = "http://vault-b.sim:8200"


def make(seed: int = 1, *, faults: FaultPlan | None = None, **config: Any
         ) -> tuple[ManualClock, SimVault]:
    clock = ManualClock()
    options: dict[str, Any] = {
        "addresses": (ADDR, OTHER), "second_phase": 0.0, "latency": (0.01, 0.01),
        "roles": {"app": DynamicRole(default_ttl=4, max_ttl=7)},
        "auth": {"approle": AuthMount("approle", TokenSpec(ttl=6, max_ttl=10)),
                 "kubernetes": AuthMount("kubernetes"), "jwt": AuthMount("jwt")},
        "faults": faults, **config}
    return clock, SimVault(clock, random.Random(seed), SimConfig(**options))


def call(vault: SimVault, method: str, path: str, token: str | None = None,
         body: dict[str, Any] | None = None, *, timeout: float = 5.0, addr: str = ADDR
         ) -> tuple[int, Any]:
    headers = {"X-Vault-Request": "true"}
    if token:
        headers["X-Vault-Token"] = token
    payload = json.dumps(body).encode() if body is not None else None
    deadline = vault.clock.monotonic() + timeout
    raw = vault(method, f"{addr}/v1/{path}", headers, payload, deadline=deadline)
    return raw.status, json.loads(raw.body) if raw.body else None


def login(vault: SimVault) -> tuple[str, str]:
    status, answer = call(vault, "POST", "auth/approle/login",
                          body={"role_id": "r", "secret_id": "s"})
    assert status == 200
    return answer["auth"]["client_token"], answer["auth"]["accessor"]


def creds(vault: SimVault, token: str) -> str:
    status, answer = call(vault, "GET", "database/creds/app", token)
    assert status == 200, answer
    return str(answer["lease_id"])


def renew(vault: SimVault, token: str, lease_id: str, increment: int) -> tuple[int, Any]:
    return call(vault, "PUT", "sys/leases/renew", token,
                {"lease_id": lease_id, "increment": increment})


# -- tokens -----------------------------------------------------------------------------------

def test_login_answers_like_openbao() -> None:
    _, vault = make()
    status, answer = call(vault, "POST", "auth/approle/login",
                          body={"role_id": "r", "secret_id": "s"})
    assert status == 200
    assert set(answer) == {"request_id", "lease_id", "renewable", "lease_duration", "data",
                           "wrap_info", "warnings", "auth"}
    auth = answer["auth"]
    assert auth["lease_duration"] == 6 and auth["renewable"] is True
    assert auth["client_token"].startswith("s.")
    assert "vaultdb-app" in auth["policies"]
    record = vault.ledger.tokens[auth["accessor"]]
    assert record.owner == "process" and record.path == "auth/approle/login"
    assert record.max_end == record.created + 10


@pytest.mark.parametrize(("path", "body", "status", "text"), [
    ("auth/kubernetes/login", {"role": "r"}, 400, "missing jwt"),
    ("auth/kubernetes/login", {"jwt": "x"}, 400, "missing role"),
    ("auth/jwt/login", {"role": "r"}, 400, "missing token"),
    ("auth/approle/login", {"secret_id": "x"}, 500, "missing role_id"),
    ("auth/approle/login", {"role_id": "x"}, 400, "invalid role or secret ID"),
    ("auth/nope/login", {"role": "r", "jwt": "x"}, 403, "permission denied"),
])
def test_login_rejections(path: str, body: dict[str, Any], status: int, text: str) -> None:
    _, vault = make()
    assert call(vault, "POST", path, body=body) == (status, {"errors": [text]})
    assert not vault.ledger.tokens_of("process")


def test_renew_self_caps_at_the_role_max_with_openbaos_warning() -> None:
    _clock, vault = make()
    token, accessor = login(vault)
    status, answer = call(vault, "POST", "auth/token/renew-self", token, {"increment": 100})
    assert status == 200 and answer["auth"]["lease_duration"] == 10
    assert answer["warnings"] == ['TTL of "1m40s" exceeded the effective max_ttl of "10s"; '
                                  'TTL value is capped accordingly']
    status, answer = call(vault, "POST", "auth/token/renew-self", token, {"increment": 0})
    assert answer["auth"]["lease_duration"] == 6 and answer["warnings"] is None
    assert len(vault.ledger.tokens[accessor].renewals) == 2


def test_periodic_token_renews_to_its_period_without_warning() -> None:
    _, vault = make()
    token, _ = vault.issue_token(TokenSpec(ttl=3, period=8))
    status, answer = call(vault, "GET", "auth/token/lookup-self", token)
    assert answer["data"]["period"] == 8 and answer["data"]["ttl"] == 8
    status, answer = call(vault, "POST", "auth/token/renew-self", token, {"increment": 100})
    assert (status, answer["auth"]["lease_duration"], answer["warnings"]) == (200, 8, None)


def test_explicit_max_ttl_caps_then_past_max_is_a_500() -> None:
    clock, vault = make()
    token, _ = vault.issue_token(TokenSpec(ttl=5, explicit_max_ttl=7))
    clock.now += 0.5  # still in the second it was issued in: 7 whole seconds left
    status, answer = call(vault, "POST", "auth/token/renew-self", token, {"increment": 100})
    assert answer["auth"]["lease_duration"] == 7
    assert 'exceeded the effective max_ttl of "7s"' in answer["warnings"][0]
    clock.now = 1007.2  # alive until 1007.5, but its last whole second has begun
    status, answer = call(vault, "POST", "auth/token/renew-self", token, {"increment": 2})
    assert status == 500
    assert answer == {"errors": ["1 error occurred:\n\t* past the max TTL, cannot renew\n\n"]}


def test_non_renewable_token() -> None:
    _, vault = make()
    token, _ = vault.issue_token(TokenSpec(ttl=5, renewable=False))
    assert call(vault, "POST", "auth/token/renew-self", token, {"increment": 5}) == (
        400, {"errors": ["lease is not renewable"]})


def test_dead_unknown_or_missing_token_gets_403_everywhere() -> None:
    clock, vault = make()
    token, accessor = login(vault)
    lease_id = creds(vault, token)
    clock.now += 6.5  # the token (6 s) is dead
    denied = (403, {"errors": ["permission denied"]})
    for secret in (token, "s.unknown", None):
        assert call(vault, "GET", "auth/token/lookup-self", secret) == denied
        assert call(vault, "POST", "auth/token/renew-self", secret, {}) == denied
        assert call(vault, "POST", "auth/token/revoke-self", secret) == denied
        assert call(vault, "GET", "database/creds/app", secret) == denied
        assert renew(vault, secret or "", lease_id, 1) == denied
    record = vault.ledger.tokens[accessor]
    assert (record.why, record.revoked_at) == ("expired", record.expires)
    assert vault.ledger.requests[-1].accessor is None


def test_lookup_self_shape() -> None:
    clock, vault = make()
    token, accessor = login(vault)
    clock.now += 2.2
    status, answer = call(vault, "GET", "auth/token/lookup-self", token)
    data = answer["data"]
    assert status == 200 and data["accessor"] == accessor and data["ttl"] == 4
    assert data["renewable"] is True and data["explicit_max_ttl"] == 0 and "period" not in data
    assert data["expire_time"].endswith("Z") and data["creation_ttl"] == 6
    assert call(vault, "PUT", "auth/token/lookup-self", token)[0] == 403


# -- leases -----------------------------------------------------------------------------------

def test_creds_create_a_user_and_a_lease() -> None:
    _clock, vault = make()
    token, accessor = login(vault)
    status, answer = call(vault, "GET", "database/creds/app", token)
    assert status == 200 and answer["renewable"] is True and answer["lease_duration"] == 4
    assert answer["lease_id"].startswith("database/creds/app/")
    assert set(answer["data"]) == {"username", "password"}
    record = vault.ledger.leases[answer["lease_id"]]
    assert record.username == answer["data"]["username"].strip()
    assert record.username.startswith("v-approle-app-")
    assert (record.creator, record.owner, record.role) == (accessor, "process", "app")
    assert record.max_end == 1007.0  # Vault counts from the whole second it was issued in
    assert call(vault, "GET", "database/creds/nope", token) == (
        400, {"errors": ["unknown role: nope"]})
    assert call(vault, "POST", "database/creds/app", token)[0] == 403


def test_lease_renewal_caps_at_max_ttl_then_the_lease_is_gone() -> None:
    clock, vault = make()
    token, _ = vault.issue_token(TokenSpec(ttl=600))
    lease_id = creds(vault, token)
    status, answer = renew(vault, token, lease_id, 100)
    assert (status, answer["lease_duration"], answer["lease_id"]) == (200, 7, lease_id)
    assert answer["warnings"] == ['TTL of "1m40s" exceeded the effective max_ttl of "7s"; '
                                  'TTL value is capped accordingly']
    clock.now = 1001.0
    status, answer = renew(vault, token, lease_id, 0)  # 0: the role's default_ttl
    assert (answer["lease_duration"], answer["warnings"]) == (4, None)
    clock.now = 1004.5
    assert renew(vault, token, lease_id, 100)[1]["lease_duration"] == 3  # until 1007.5
    clock.now = 1007.2  # alive, but inside the last whole second before max_ttl
    assert renew(vault, token, lease_id, 3) == (400, {"errors": [
        "failed to renew entry: resp: (*logical.Response)(nil) err: "
        "past the max TTL, cannot renew"]})
    clock.now = 1008.0
    assert renew(vault, token, lease_id, 3) == (400, {"errors": ["lease not found"]})
    record = vault.ledger.leases[lease_id]
    assert record.why == "expired" and record.ended_at == record.dropped_at == 1007.5
    assert [ttl for _, ttl in record.renewals] == [7, 4, 3]


def test_whole_second_arithmetic_follows_the_phase() -> None:
    """Issued at x.5 of Vault's second, 4.6 s later only 2 whole seconds of 7 are left."""
    clock, vault = make(second_phase=0.5, roles={"app": DynamicRole(default_ttl=6, max_ttl=7)})
    token, _ = vault.issue_token(TokenSpec(ttl=600))
    lease_id = creds(vault, token)
    clock.now = 1004.6
    _status, answer = renew(vault, token, lease_id, 100)
    assert answer["lease_duration"] == 2


def test_expired_lease_is_not_found_and_unknown_ids_too() -> None:
    clock, vault = make()
    token, _ = vault.issue_token(TokenSpec(ttl=600))
    lease_id = creds(vault, token)
    clock.now += 4.0
    assert renew(vault, token, lease_id, 1) == (400, {"errors": ["lease not found"]})
    assert renew(vault, token, "database/creds/app/nope", 1)[1] == {
        "errors": ["lease not found"]}
    assert call(vault, "PUT", "sys/leases/renew", token, {"increment": 1}) == (
        400, {"errors": ["lease_id must be specified"]})
    assert renew(vault, token, lease_id, -5)[0] == 400


def test_revoke_is_204_even_when_unknown_or_twice() -> None:
    _clock, vault = make()
    token, accessor = login(vault)
    lease_id = creds(vault, token)
    for body in ({"lease_id": lease_id, "sync": True}, {"lease_id": lease_id, "sync": True},
                 {"lease_id": "database/creds/app/unknown"}):
        assert call(vault, "PUT", "sys/leases/revoke", token, body) == (204, None)
    record = vault.ledger.leases[lease_id]
    assert (record.why, record.revoked_by, record.ended_at) == ("revoked", accessor,
                                                                record.dropped_at)
    assert renew(vault, token, lease_id, 1) == (400, {"errors": ["lease not found"]})


def test_token_death_revokes_its_leases_at_that_moment() -> None:
    clock, vault = make(roles={"app": DynamicRole(default_ttl=45, max_ttl=90)})
    short, short_accessor = vault.issue_token(TokenSpec(ttl=24))
    other, _ = vault.issue_token(TokenSpec(ttl=600))
    lease_id = creds(vault, short)
    clock.now += 30
    assert renew(vault, other, lease_id, 10) == (400, {"errors": ["lease not found"]})
    record = vault.ledger.leases[lease_id]
    token = vault.ledger.tokens[short_accessor]
    assert record.why == "token-death" and record.ended_at == token.expires == token.revoked_at
    assert record.dropped_at == record.ended_at


def test_revoke_self_revokes_the_token_and_its_leases() -> None:
    _clock, vault = make(roles={"app": DynamicRole(default_ttl=45, max_ttl=90)})
    token, accessor = login(vault)
    lease_id = creds(vault, token)
    assert call(vault, "POST", "auth/token/revoke-self", token) == (204, None)
    assert vault.ledger.tokens[accessor].why == "revoked"
    assert vault.ledger.leases[lease_id].why == "token-death"
    assert call(vault, "GET", "auth/token/lookup-self", token)[0] == 403


def test_static_creds_rotate_every_rotation_period() -> None:
    clock, vault = make(static_roles={"st": StaticRole("st_user", rotation_period=100)})
    token, _ = vault.issue_token(TokenSpec(ttl=600))
    status, first = call(vault, "GET", "database/static-creds/st", token)
    data = first["data"]
    assert status == 200 and data["username"] == "st_user" and data["rotation_period"] == 100
    assert data["ttl"] == 100 and first["lease_id"] == ""
    clock.now += 60
    assert call(vault, "GET", "database/static-creds/st", token)[1]["data"]["password"] == (
        data["password"])
    clock.now += 40
    later = call(vault, "GET", "database/static-creds/st", token)[1]["data"]
    assert later["password"] != data["password"]
    assert later["password"] == vault.static_password("st")
    assert call(vault, "GET", "database/static-creds/nope", token)[0] == 400


# -- whole-server states ----------------------------------------------------------------------

def test_restart_loses_every_token_and_lease_without_dropping_users() -> None:
    clock, vault = make()
    token, accessor = login(vault)
    lease_id = creds(vault, token)
    vault.restart(down_for=5.0)
    with pytest.raises(TransportError) as caught:
        call(vault, "GET", "auth/token/lookup-self", token)
    assert caught.value.kind == "unreachable" and caught.value.sent is False
    clock.now += 5.0
    assert call(vault, "GET", "auth/token/lookup-self", token)[0] == 403
    record = vault.ledger.leases[lease_id]
    assert record.why == "lost-in-restart" and record.dropped_at is None
    assert vault.ledger.tokens[accessor].why == "lost-in-restart"
    foreign = vault.ledger.leases_of("foreign")
    assert [r.why for r in foreign] == ["lost-in-restart"] * 4 + [None] * 4  # and new ones
    assert {r.created for r in foreign[4:]} == set(vault.ledger.restarts)


def test_scheduled_restart_applies_at_the_windows_start() -> None:
    plan = FaultPlan((Window("restart", 1010.0, 1020.0),))
    clock, vault = make(faults=plan)
    token, _ = login(vault)
    lease_id = creds(vault, token)
    clock.now = 1030.0
    assert call(vault, "GET", "auth/token/lookup-self", token)[0] == 403
    assert vault.ledger.restarts == [1010.0]
    assert vault.ledger.leases[lease_id].ended_at == 1004.01  # expired before the restart


def test_sealed_and_leaderless() -> None:
    _, vault = make()
    token, _ = login(vault)
    vault.seal()
    assert call(vault, "GET", "database/creds/app", token) == (
        503, {"errors": ["Vault is sealed"]})
    status, health = call(vault, "GET", "sys/health")
    assert status == 503 and health["sealed"] is True
    assert call(vault, "GET", "sys/health?sealedcode=200")[0] == 200
    vault.unseal()
    vault.set_leaderless(True)
    assert call(vault, "GET", "database/creds/app", token) == (500, {"errors": [
        "local node not active but active cluster node not found"]})
    vault.set_leaderless(False)
    status, health = call(vault, "GET", "sys/health")
    assert status == 200 and health["sealed"] is False and health["version"] == "2.7.2"
    assert not [r for r in vault.ledger.leases_of("process")]


# -- faults -----------------------------------------------------------------------------------

def only(kind: str) -> FaultPlan:
    return FaultPlan(rates={kind: 1.0})


def test_blackhole_times_out_exactly_at_the_deadline_without_effects() -> None:
    clock, vault = make(faults=only("blackhole"))
    token, _ = vault.issue_token(TokenSpec(ttl=600))
    with pytest.raises(TransportError) as caught:
        call(vault, "GET", "database/creds/app", token, timeout=3.0)
    assert (caught.value.kind, caught.value.sent) == ("timeout", True)
    assert clock.now == 1003.0
    assert not vault.ledger.leases_of("process")
    assert vault.ledger.requests[-1].outcome == "timeout"


def test_lost_reply_applies_the_effect_then_times_out() -> None:
    clock, vault = make(faults=only("lost_reply"))
    token, _ = vault.issue_token(TokenSpec(ttl=600))
    with pytest.raises(TransportError):
        call(vault, "GET", "database/creds/app", token, timeout=3.0)
    assert clock.now == 1003.0
    assert len(vault.ledger.leases_of("process")) == 1
    assert vault.ledger.requests[-1].applied is True


def test_slow_answers_never_sleep_past_the_deadline() -> None:
    clock, vault = make(faults=only("slow"))
    token, _ = vault.issue_token(TokenSpec(ttl=3600))
    outcomes = set()
    for _ in range(200):
        deadline = clock.now + 2.0
        try:
            call(vault, "GET", "auth/token/lookup-self", token, timeout=2.0)
            outcomes.add("answer")
        except TransportError as exc:
            outcomes.add(exc.kind)
        assert clock.now <= deadline
    assert outcomes == {"answer", "timeout"}


def test_truncated_answers() -> None:
    clock, vault = make(faults=only("truncated"))
    token, _ = vault.issue_token(TokenSpec(ttl=600))
    with pytest.raises(TransportError) as caught:
        call(vault, "GET", "database/creds/app", token)
    assert (caught.value.kind, caught.value.sent) == ("protocol", True)
    assert vault.ledger.requests[-1].applied and vault.ledger.leases_of("process")
    clock, vault = make(faults=only("truncated_json"))
    token, _ = vault.issue_token(TokenSpec(ttl=600))
    http = VaultHTTP(ADDR, timeout=5, clock=clock, exchange=vault)
    with pytest.raises(ValueError, match="not JSON"):
        http.request("GET", "database/creds/app", token=token)


def test_weird_numbers() -> None:
    _clock, vault = make(faults=only("weird_number"))
    token, _ = vault.issue_token(TokenSpec(ttl=600))
    seen = set()
    for _ in range(40):
        _status, answer = call(vault, "GET", "database/creds/app", token)
        value = answer["lease_duration"]
        seen.add("nan" if isinstance(value, float) and math.isnan(value) else repr(value))
    assert seen == {"nan", "inf", "1e+20", "-5", "'3600'", "None"}


@pytest.mark.parametrize(("kind", "status", "text"), [
    ("error500", 500, "internal error"),
    ("ratelimit", 429, 'request path "database/creds/app": rate limit quota exceeded'),
    ("stale412", 412, "required index state not present"),
])
def test_error_answers_have_no_effect(kind: str, status: int, text: str) -> None:
    _, vault = make(faults=only(kind))
    token, _ = vault.issue_token(TokenSpec(ttl=600))
    assert call(vault, "GET", "database/creds/app", token) == (status, {"errors": [text]})
    assert not vault.ledger.leases_of("process")


def test_bad_gateway_is_not_json() -> None:
    _, vault = make(faults=only("bad_gateway"))
    raw = vault("GET", f"{ADDR}/v1/sys/health", {}, None, deadline=2000.0)
    assert raw.status == 502 and raw.headers["content-type"] == "text/html"


def test_redirects_point_at_another_address_and_vaulthttp_follows() -> None:
    """Followed because the other address is allowed (VAULTDB_REDIRECT_HOSTS); refused, with
    the token kept home, otherwise (tests/unit/test_http_redirects.py)."""
    clock, vault = make(faults=FaultPlan(rates={"redirect": 0.5}))
    token, _ = vault.issue_token(TokenSpec(ttl=600))
    other = OTHER.split("://", 1)[1]
    http = VaultHTTP(ADDR, timeout=5, clock=clock, exchange=vault,
                     redirect_hosts=frozenset({other}))
    for _ in range(20):
        try:
            http.request("GET", "auth/token/lookup-self", token=token)
        except Exception as exc:  # four redirects in a row: VaultHTTP gives up with a 307
            assert getattr(exc, "status", None) == 307
    hosts = {r.host for r in vault.ledger.requests}
    assert hosts == {ADDR, OTHER}
    assert {r.outcome for r in vault.ledger.requests if r.fault == "redirect"} == {307}


def test_unknown_host_is_unreachable() -> None:
    _, vault = make()
    with pytest.raises(TransportError) as caught:
        vault("GET", "http://elsewhere:8200/v1/sys/health", {}, None, deadline=2000.0)
    assert (caught.value.kind, caught.value.sent) == ("unreachable", False)


def test_windows_apply_between_their_times_only() -> None:
    plan = FaultPlan((Window("sealed", 1010.0, 1020.0), Window("refused", 1030.0, 1040.0)))
    clock, vault = make(faults=plan)
    assert call(vault, "GET", "sys/health")[0] == 200
    clock.now = 1015.0
    assert call(vault, "GET", "sys/health")[0] == 503
    clock.now = 1035.0
    with pytest.raises(TransportError):
        call(vault, "GET", "sys/health")
    assert clock.now == pytest.approx(1035.001)  # a refused connection still takes time
    clock.now = 1040.0
    assert call(vault, "GET", "sys/health")[0] == 200


def test_index_header_is_base64_json_when_enabled() -> None:
    _, vault = make(index_header=True)
    raw = vault("GET", f"{ADDR}/v1/sys/health", {}, None, deadline=2000.0)
    import base64
    state = json.loads(base64.b64decode(raw.headers["x-vault-index"]))
    assert set(state) == {"cluster", "value"} and state["value"].isdigit()


# -- plans, determinism, ledger ---------------------------------------------------------------

def test_fault_plan_round_trips_through_its_description() -> None:
    for seed in range(50):
        plan = FaultPlan.random(random.Random(seed), horizon=4 * 3600)
        assert FaultPlan.parse(plan.describe()) == plan
    with pytest.raises(ValueError):
        FaultPlan(rates={"meteor": 0.1})
    with pytest.raises(ValueError):
        Window("refused", 10.0, 5.0)


def lifetime(seed: int) -> str:
    """A few hundred requests of a crude client under a random plan; the ledger's trace."""
    rng = random.Random(seed)
    plan = FaultPlan.random(rng, horizon=3600, rate=0.2)
    clock, vault = make(seed, faults=plan, latency=(0.002, 0.05))
    token = None
    leases: list[str] = []
    for _ in range(300):
        try:
            if token is None:
                token = call(vault, "POST", "auth/approle/login",
                             body={"role_id": "r", "secret_id": "s"})[1]["auth"]["client_token"]
            status, answer = call(vault, "GET", "database/creds/app", token)
            if status == 403:
                token = None
            elif status == 200:
                leases.append(answer["lease_id"])
                renew(vault, token, leases[0], 5)
                call(vault, "PUT", "sys/leases/revoke", token, {"lease_id": leases.pop(0)})
        except (TransportError, TypeError, KeyError, ValueError):
            pass
        clock.now += 10.0
    return plan.describe() + "\n" + vault.ledger.trace()


def test_same_seed_same_lifetime_other_seed_other_lifetime() -> None:
    assert lifetime(7) == lifetime(7)
    assert lifetime(7) != lifetime(8)


def test_foreign_leases_are_seeded_and_a_wrong_revoke_shows() -> None:
    _, vault = make()
    foreign = vault.ledger.leases_of("foreign")
    assert len(foreign) == 4 and len(vault.ledger.tokens_of("foreign")) == 2
    token, accessor = login(vault)
    call(vault, "PUT", "sys/leases/revoke", token, {"lease_id": foreign[0].lease_id})
    wrong = [r for r in vault.ledger.leases_of("foreign") if r.why == "revoked"]
    assert [(r.lease_id, r.revoked_by) for r in wrong] == [(foreign[0].lease_id, accessor)]


def test_requests_per_window() -> None:
    clock, vault = make()
    for step in (0, 1, 2, 70, 71):
        clock.now = 1000.0 + step
        call(vault, "GET", "sys/health")
    assert vault.ledger.max_requests_per(60.0) == 3


def test_vaultdb_client_classifies_simvault_answers() -> None:
    """The errors vaultdb raises above the Exchange, for what SimVault answers."""
    clock, vault = make()
    client = VaultClient(VaultSettings(addr=ADDR, timeout=5), attempts=1, clock=clock,
                         exchange=vault)
    token, _ = vault.issue_token(TokenSpec(ttl=6, max_ttl=600))
    login_result = client.login(TokenAuth(token=token))
    assert login_result.owned is False and login_result.ttl == 6
    secret = client.read_dynamic("database", "app")
    assert secret.lease_duration == 4
    renewal = client.renew_lease(secret.lease_id, 100)
    assert renewal.ttl == 7 and renewal.warnings
    with pytest.raises(errors.LeaseNotFoundError):
        client.renew_lease("database/creds/app/unknown", 5)
    client.revoke_lease(secret.lease_id)
    with pytest.raises(errors.SecretPathError):
        client.read_dynamic("database", "nope")
    clock.now += 7
    with pytest.raises(errors.PermissionDeniedError):
        client.lookup_self()
    vault.seal()
    assert client.health().sealed is True  # vaultdb asks with sealedcode=200
    with pytest.raises(errors.VaultUnavailableError):
        client.read_dynamic("database", "app")
