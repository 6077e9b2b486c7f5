"""`python -m meta_sandbox`: run the Meta sandbox, a local stand-in for the WhatsApp Cloud API.

    python -m meta_sandbox --port 8100 --webhook-url http://127.0.0.1:8000/webhooks/meta/

With META_GRAPH_URL=http://127.0.0.1:8100 the service sends through the sandbox.
"""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from meta_sandbox.arrivals import listening_socket
from meta_sandbox.config import DEFAULT_STATE_FILE, SandboxConfig, config_validate
from meta_sandbox.server import make_app

DESCRIPTION = """Run the Meta sandbox: a local stand-in for the WhatsApp Cloud (Graph) API.

It serves POST /{version}/{phone_number_id}/messages (template sends),
GET and POST /{version}/{waba_id}/message_templates, POST /{version}/{template_id},
GET and POST /{version}/{waba_id}/phone_numbers for every Graph API version Meta still serves
(/v24.0 ... /v27.0; an expired one is refused with Meta's error 2635, one never released with
2500; --graph-date pins the day that decides). A number read with v24.0 or later carries the
portfolio's messaging limit (whatsapp_business_manager_messaging_limit), with older versions its
own messaging_limit_tier.
It knows the business accounts, access tokens, numbers and templates registered with it
(`manage.py demo` registers its own; POST /_sandbox/accounts creates an account with its token)
and those of --catalog FILE, and keeps them in --state-file across restarts.
It answers like Meta: wamids, and Meta's errors: 190 bad token, 100 unknown object or malformed
body, 132001 unknown or unapproved template (132015 a PAUSED one, 132016 a DISABLED one), 132000
parameters that do not fit the template, 132012 named parameters for a positional template or the
reverse, 131008 a required parameter missing, 130429 above --rate-per-number sends in any 1-second
window per number.

Each accepted message gets signed status webhooks (X-Hub-Signature-256 with --app-secret) at
--webhook-url: `sent` at once, `delivered` after --delivered-after seconds for
--delivered-share of messages, `read` after --read-after for --read-share of those delivered.
FAIL SUFFIX: a recipient whose digits end with --fail-suffix (default 9999, e.g. +5491100009999)
gets `failed` with error 131026 "Message undeliverable" instead of `delivered`.
A send to a business-scoped user id (`recipient` instead of `to`) is answered with
`contacts: [{"input", "user_id"}]`, and its statuses carry `recipient_user_id` (no `recipient_id`)
and `contacts: [{"user_id"}]`, as Meta documents; POST /_sandbox/user_preferences takes a
`user_id` beside or instead of `wa_id`.

Faults, drawn per send: --error-share (HTTP 500, code 131000), --http-5xx-share (bare 502),
--timeout-share (no answer for --timeout-seconds), --drop-share (accepted and its webhooks
follow, but the connection closes unanswered), --slow-share (answer after --slow-seconds),
--webhook-delay (every status webhook leaves that much late, stamped with its event's time).
Only accepted sends count against the rate; a dropped send is accepted.

GET /_sandbox/stats, GET /_sandbox/messages, POST /_sandbox/reset, POST /_sandbox/refresh,
POST /_sandbox/accounts, POST /_sandbox/catalog and GET|POST /_sandbox/config (JSON, the flags'
names with underscores) inspect and steer it."""

# (flag, default, help), in the order a reader looks for them.
NUMBERS = [
    ("--delivered-after", 1.0, "Seconds from acceptance to `delivered`."),
    ("--delivered-share", 1.0, "Share of messages delivered."),
    ("--read-after", 3.0, "Seconds from acceptance to `read`."),
    ("--read-share", 0.5, "Share of delivered messages read."),
    ("--error-share", 0.0, "Share of sends answered 500 with code 131000."),
    ("--http-5xx-share", 0.0, "Share of sends answered with a bare 502 HTML page."),
    ("--slow-share", 0.0, "Share of accepted sends answered after --slow-seconds."),
    ("--slow-seconds", 2.0, "How late a slow answer comes."),
    ("--timeout-share", 0.0, "Share of sends left unanswered for --timeout-seconds."),
    ("--timeout-seconds", 60.0, "How long an unanswered send hangs before closing."),
    ("--drop-share", 0.0, "Share of sends accepted, then closed without an answer."),
    ("--webhook-delay", 0.0, "Seconds every status webhook leaves late (same stamps)."),
]


def parser_build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m meta_sandbox",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="Default 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8100, help="Default 8100.")
    parser.add_argument(
        "--webhook-url",
        default="http://127.0.0.1:8000/webhooks/meta/",
        help="Where status webhooks go (default the local service); '' sends none.",
    )
    parser.add_argument(
        "--app-secret",
        default=None,
        help="Signs webhooks; default $META_APP_SECRET, else the service's development secret.",
    )
    parser.add_argument(
        "--rate-per-number",
        type=int,
        default=80,
        help="Sends per phone number in any 1-second window before 130429; 0 = no limit.",
    )
    for flag, default, text in NUMBERS:
        parser.add_argument(flag, type=float, default=default, help=f"{text} Default {default}.")
    parser.add_argument(
        "--fail-suffix",
        default="9999",
        help="Recipients whose digits end with this fail with 131026; '' fails none.",
    )
    parser.add_argument("--seed", type=int, default=None, help="Seed the random draws.")
    parser.add_argument(
        "--graph-date",
        default=None,
        help="The day (YYYY-MM-DD) deciding which Graph API versions are served; default today.",
    )
    parser.add_argument(
        "--catalog", default=None, help="A JSON catalog file whose accounts the sandbox knows."
    )
    parser.add_argument(
        "--refresh-seconds",
        type=float,
        default=5.0,
        help="How often the --catalog file is checked for changes.",
    )
    parser.add_argument(
        "--state-file",
        default=DEFAULT_STATE_FILE,
        help=f"Where the catalog is kept across restarts (default {DEFAULT_STATE_FILE}); "
        "'' keeps it in memory only.",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    options = parser_build().parse_args(argv)
    try:
        config = config_validate(
            SandboxConfig(
                webhook_url=options.webhook_url or None,
                **({"app_secret": options.app_secret} if options.app_secret else {}),
                rate_per_number=options.rate_per_number,
                delivered_after=options.delivered_after,
                delivered_share=options.delivered_share,
                read_after=options.read_after,
                read_share=options.read_share,
                fail_suffix=options.fail_suffix,
                error_share=options.error_share,
                http_5xx_share=options.http_5xx_share,
                slow_share=options.slow_share,
                slow_seconds=options.slow_seconds,
                timeout_share=options.timeout_share,
                timeout_seconds=options.timeout_seconds,
                drop_share=options.drop_share,
                webhook_delay=options.webhook_delay,
                seed=options.seed,
                graph_date=options.graph_date or None,
                catalog_file=options.catalog,
                state_file=options.state_file or None,
                refresh_seconds=options.refresh_seconds,
            )
        )
    except ValueError as error:
        sys.exit(f"meta_sandbox: {error}")
    # Warnings and errors only: the sandbox says what went wrong (a webhook given up, a catalog
    # file it could not read), and at INFO the libraries' per-request lines cost a fifth of its
    # throughput (bench/sandbox_throughput.py).
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    print(
        f"Meta sandbox on http://{options.host}:{options.port} (rate {config.rate_per_number}/s "
        f"per number, webhooks to {config.webhook_url or 'nowhere'}, fail suffix "
        f"{config.fail_suffix or 'none'}, catalog kept in {config.state_file or 'memory'})",
        flush=True,
    )
    web.run_app(
        make_app(config),
        sock=listening_socket(options.host, options.port),
        access_log=None,
        shutdown_timeout=1.0,
        print=None,
    )


if __name__ == "__main__":
    main()
