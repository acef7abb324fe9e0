"""Python client of the smallserve.v1 API, sync and asyncio.

    from serving.client import Client
    with Client("localhost:8001") as c:
        print(c.classify("mnist", pixels=images)["results"][0]["top"])
"""

from serving.client.channel import TLSOptions, read_token
from serving.client.client import AsyncClient, Client, ClientError

__all__ = ["AsyncClient", "Client", "ClientError", "TLSOptions", "read_token"]
