#!/usr/bin/env python3
"""The floor of a catalogue check on S3: list every key under a prefix, page by page (1,000 keys
a page, as S3 serves them), with curl signing each ListObjectsV2 request (SigV4), and nothing
else. Prints the number of keys. Endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION.
    s3_list.py BUCKET PREFIX"""
import hashlib
import os
import subprocess
import sys
import urllib.parse
import xml.etree.ElementTree as ET

bucket, prefix = sys.argv[1], sys.argv[2]
env = os.environ
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
keys, token = 0, None
while True:
    q = {"list-type": "2", "prefix": prefix}
    if token:
        q["continuation-token"] = token
    query = urllib.parse.urlencode(sorted(q.items()), quote_via=urllib.parse.quote, safe="")
    url = f"{env['AWS_ENDPOINT_URL']}/{bucket}?{query}"
    body = subprocess.run(
        # (the query sorted and the empty body's hash sent: curl 7.88 does neither itself)
        ["curl", "-sSf", "--aws-sigv4", f"aws:amz:{env.get('AWS_REGION', 'us-east-1')}:s3",
         "-H", "x-amz-content-sha256: " + hashlib.sha256(b"").hexdigest(),
         "--user", f"{env['AWS_ACCESS_KEY_ID']}:{env['AWS_SECRET_ACCESS_KEY']}", url],
        check=True, capture_output=True).stdout
    root = ET.fromstring(body)
    keys += len(root.findall(f"{NS}Contents"))
    if root.findtext(f"{NS}IsTruncated") != "true":
        break
    token = root.findtext(f"{NS}NextContinuationToken")
print(keys)
