"""Network calls, threads and set iteration inside tasks."""

import concurrent.futures
import multiprocessing
import socket
import threading
import urllib.request
from concurrent.futures import ProcessPoolExecutor

import httpx
import requests

from shop.app import app
from shop.helpers import record_all


@app.task
def reserve(sku: str) -> str:
    return sku


@app.task
def notify(url: str) -> list[object]:
    try:
        return [
            requests.post(url, json={}),  # expect: PNR009
            httpx.get(url),  # expect: PNR009
            urllib.request.urlopen(url),  # expect: PNR009
            socket.create_connection(("example.com", 80)),  # expect: PNR009
        ]
    except requests.RequestException:
        return []


@app.task
def fan_out(skus: list[str]) -> None:
    threading.Thread(target=print).start()  # expect: PNR010
    with concurrent.futures.ThreadPoolExecutor() as pool:  # expect: PNR010
        pool.map(print, skus)
    with ProcessPoolExecutor() as processes:  # expect: PNR010
        processes.map(print, skus)
    with multiprocessing.Pool(2) as workers:  # expect: PNR010
        workers.map(print, skus)


@app.task
def set_orders(skus: list[str]) -> list[object]:
    for sku in set(skus):  # expect: PNR011
        fan_out.wf.execute_task(reserve, sku)
    for sku in {"a", "b"}:  # expect: PNR011
        reserve(sku)
    pending = {s.lower() for s in skus}
    for sku in list(pending):  # expect: PNR011
        set_orders.wf.set_data(sku, "pending")
    for sku in frozenset(skus):  # expect: PNR011
        record_all(set_orders, [sku])
    children = [set_orders.wf.execute_task(reserve, s) for s in set(skus)]  # expect: PNR011
    counted = [len(s) for s in set(skus)]
    for sku in sorted(set(skus)):
        set_orders.wf.set_data(sku, "sorted")
    return [children, counted]
