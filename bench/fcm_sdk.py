"""The firebase-admin Python SDK's send_each_async against the mock FCM.

Usage: fcm_sdk.py PROJECT FCM_HOST:PORT REGISTRATION_TOKEN COUNT BATCH
Env: FCM_AUTHORIZATION ("Bearer ..." from `pushpark fcm token`), SSL_CERT_FILE (the mock's ca.pem,
which httpx trusts through it). Prints `messages_per_sec=.. errors=..`.

Two things are patched, as the SDK has no FCM emulator setting:
- the FCM URL, a class attribute naming fcm.googleapis.com;
- the credential: google-auth refreshes tokens with `requests` (HTTP/1.1), which the
  HTTP/2-only mock does not serve, so the SDK gets the token pushpark fetched.
The sends themselves are the SDK's own: httpx with HTTP/2 on one connection.
"""

import asyncio
import os
import sys
import time
import warnings

import firebase_admin
import google.oauth2.credentials
from firebase_admin import credentials, messaging


class FetchedToken(credentials.Base):
    """A credential holding an access token fetched elsewhere; never refreshed."""

    def __init__(self, token):
        self._credential = google.oauth2.credentials.Credentials(token)

    def get_credential(self):
        return self._credential


async def bench(count, batch, token):
    message = messaging.Message(
        token=token,
        data={"pushpark": "test"},
        android=messaging.AndroidConfig(priority="high", ttl=30),
    )
    # One warm-up message: the connection's handshake is not part of the rate, as in `fcm bench`.
    await messaging.send_each_async([message])
    errors = 0
    started = time.perf_counter()
    for sent in range(0, count, batch):
        answer = await messaging.send_each_async([message] * min(batch, count - sent))
        errors += answer.failure_count
    return count / (time.perf_counter() - started), errors


def main():
    # 7.7.0 deprecates Message.token for Message.fid (Firebase installation ids); a SIP
    # device registers its FCM registration token, which is what FCM's `token` field takes.
    warnings.filterwarnings("ignore", "Message.token is deprecated")
    project, endpoint, token, count, batch = sys.argv[1:]
    bearer = os.environ["FCM_AUTHORIZATION"].removeprefix("Bearer ")
    messaging._MessagingService.FCM_URL = f"https://{endpoint}/v1/projects/{{0}}/messages:send"
    firebase_admin.initialize_app(FetchedToken(bearer), {"projectId": project})
    rate, errors = asyncio.run(bench(int(count), int(batch), token))
    print(f"messages_per_sec={rate:.1f} errors={errors}")


main()
