"""The naive baseline: what a user would write with python-alipay-sdk, sqlite3 and aiohttp.

Runs in its own virtual environment (bench/.venv-naive): python-alipay-sdk clashes with the
official SDK our tests use. ``AliPay.verify`` + one stdlib sqlite3 INSERT and COMMIT per request,
SQLite defaults (rollback journal, synchronous FULL), on the event loop, as tutorials show.

    bench/.venv-naive/bin/python bench/naive_server.py PORT DB APP_KEY_PEM ALIPAY_PUBLIC_PEM
"""

import sqlite3
import sys

from aiohttp import web
from alipay import AliPay


def main() -> None:
    port, db_path, app_key_file, alipay_key_file = sys.argv[1:5]
    alipay = AliPay(
        appid="bench",
        app_notify_url=None,
        app_private_key_string=open(app_key_file).read(),  # noqa: SIM115
        alipay_public_key_string=open(alipay_key_file).read(),  # noqa: SIM115
        sign_type="RSA2",
    )
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE IF NOT EXISTS notifications (notify_id TEXT, body TEXT)")

    async def notify(request: web.Request) -> web.Response:
        data = dict(await request.post())
        signature = data.pop("sign")
        if not alipay.verify(data, signature):
            return web.Response(text="fail", status=400)
        db.execute("INSERT INTO notifications VALUES (?, ?)", (data["notify_id"], str(data)))
        db.commit()
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/alipay/notify", notify)
    web.run_app(app, host="127.0.0.1", port=int(port), print=None, access_log=None)


if __name__ == "__main__":
    main()
