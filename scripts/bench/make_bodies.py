#!/usr/bin/env python3
"""Writes the benchmark request bodies: one ~1 KB track event, and a batch of 100."""
import json
import sys
import uuid

out = sys.argv[1]


def event(i: int) -> dict:
    return {
        "type": "track",
        "userId": f"user-{i % 1000}",
        "event": "Product Viewed",
        "messageId": str(uuid.uuid4()),
        "timestamp": "2026-11-29T12:00:00.000Z",
        "properties": {
            "product_id": f"sku-{i}",
            "name": "Fleece-lined waterproof hiking jacket, forest green",
            "category": "Outdoor/Clothing/Jackets",
            "price": 149.99,
            "currency": "EUR",
            "position": i % 24,
            "url": f"https://shop.example.com/products/sku-{i}?utm_source=newsletter&utm_medium=email",
            "image_url": f"https://cdn.example.com/images/products/sku-{i}/front-large.jpg",
            "tags": ["outdoor", "waterproof", "winter", "bestseller"],
        },
        "context": {
            "library": {"name": "analytics-python", "version": "2.4.0"},
            "locale": "en-GB",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
            "page": {"path": f"/products/sku-{i}", "referrer": "https://www.example.org/", "title": "Hiking jacket"},
        },
    }


single = event(0)
with open(f"{out}/single.json", "w") as f:
    json.dump(single, f)
with open(f"{out}/batch.json", "w") as f:
    json.dump({"batch": [event(i) for i in range(100)], "sentAt": "2026-11-29T12:00:01.000Z"}, f)
print(len(json.dumps(single)))
