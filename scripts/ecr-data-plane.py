"""The local ECR data plane: ECR's registry host names over TLS, in front of plain registries.

One process serves every ECR host of the local services, each on its own loopback address and
port 443 (the hosts are mapped to those addresses in the services' private /etc/hosts). For each
request it does what ECR's data plane does before and after the registry itself:

- authentication as ECR's: Basic, user AWS, the password the ECR API server's
  GetAuthorizationToken gives the host's account; anything else is 401 with ECR's challenge;
- a repository that the ECR API server does not have is refused (404 NAME_UNKNOWN), pushes
  and pulls alike, before the registry sees the request;
- a manifest PUT to a tag that already names another image in an immutable repository is
  refused (400 TAG_INVALID), with the exclusion filters of ECR's mutability settings;
- every manifest stored is registered with the ECR API server (PutImage, with the exact bytes,
  digest, media type and tag), and its scan starts when the repository scans on push.

Everything else is forwarded to the registry as it came, bodies streamed both ways.

Usage: python ecr-data-plane.py CONFIG.json
CONFIG: {"endpoint": "http://127.0.0.1:5055", "cert": PEM, "key": PEM,
         "hosts": [{"name": HOST, "listen": "127.0.0.2", "port": 443, "account": "123456789012",
                    "region": "us-east-1", "password": "...", "backend": "127.0.0.1:5002"}]}
"""

import base64
import fnmatch
import hashlib
import http.client
import http.server
import json
import re
import ssl
import sys
import threading

import boto3
import botocore.exceptions

BLOCK = 1 << 16
MANIFEST_LIMIT = 4 << 20
# /v2/<name>/(manifests/<ref> | blobs/... | tags/list)
PATH = re.compile(r"^/v2/(?P<name>.+?)/(?P<kind>manifests|blobs|tags)(?:/(?P<rest>[^?]*))?(?:\?.*)?$")


def ecr_client(config, host):
    return boto3.client(
        "ecr",
        region_name=host["region"],
        endpoint_url=config["endpoint"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def handler_for(config, host):
    ecr = ecr_client(config, host)
    lock = threading.Lock()  # boto3 clients are thread-safe, but keep calls simple to follow
    realm = f'Basic realm="https://{host["name"]}/",service="ecr.amazonaws.com"'
    expected = "Basic " + base64.b64encode(f"AWS:{host['password']}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "imgpipe-local-ecr"

        def log_message(self, fmt, *args):
            sys.stderr.write("%s %s\n" % (host["name"], fmt % args))

        def error(self, status, code, message, headers=()):
            body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def repository(self, name):
            """The ECR API server's description of repository `name`, or None."""
            try:
                with lock:
                    answer = ecr.describe_repositories(
                        registryId=host["account"], repositoryNames=[name]
                    )
                return answer["repositories"][0]
            except botocore.exceptions.ClientError as e:
                if e.response["Error"]["Code"] == "RepositoryNotFoundException":
                    return None
                raise

        def tag_digest(self, name, tag):
            try:
                with lock:
                    answer = ecr.describe_images(
                        registryId=host["account"],
                        repositoryName=name,
                        imageIds=[{"imageTag": tag}],
                    )
                return answer["imageDetails"][0]["imageDigest"]
            except botocore.exceptions.ClientError as e:
                if e.response["Error"]["Code"] in ("ImageNotFoundException",):
                    return None
                raise

        def has_digest(self, name, digest):
            try:
                with lock:
                    ecr.describe_images(
                        registryId=host["account"],
                        repositoryName=name,
                        imageIds=[{"imageDigest": digest}],
                    )
                return True
            except botocore.exceptions.ClientError as e:
                if e.response["Error"]["Code"] == "ImageNotFoundException":
                    return False
                raise

        def read_body(self):
            """The request body, streamed as it arrives: Content-Length or chunked."""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return
                    left = size
                    while left:
                        chunk = self.rfile.read(min(left, BLOCK))
                        if not chunk:
                            return
                        left -= len(chunk)
                        yield chunk
                    self.rfile.readline()
            else:
                left = int(self.headers.get("Content-Length") or 0)
                while left:
                    chunk = self.rfile.read(min(left, BLOCK))
                    if not chunk:
                        return
                    left -= len(chunk)
                    yield chunk

        def forward(self, body=None):
            """Sends the request on to the registry, headers in order and repeated ones kept
            (docker sends one Accept header per manifest type); returns the connection and its
            response. The body is `body`, else the request's own, streamed."""
            backend = http.client.HTTPConnection(host["backend"], timeout=600)
            backend.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in ("authorization", "connection", "transfer-encoding", "content-length"):
                    backend.putheader(name, value)
            has_body = self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding")
            if body is not None:
                backend.putheader("Content-Length", str(len(body)))
                backend.endheaders()
                backend.send(body)
            elif has_body:
                backend.putheader("Transfer-Encoding", "chunked")
                backend.endheaders()
                for chunk in self.read_body():
                    backend.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                backend.send(b"0\r\n\r\n")
            else:
                if self.command in ("PUT", "POST", "PATCH"):
                    backend.putheader("Content-Length", "0")
                backend.endheaders()
            return backend, backend.getresponse()

        def relay(self, response):
            self.send_response(response.status)
            length = response.getheader("Content-Length")
            for name, value in response.getheaders():
                if name.lower() in ("connection", "transfer-encoding", "content-length"):
                    continue
                self.send_header(name, value)
            if length is None and self.command != "HEAD":
                data = response.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_header("Content-Length", length or "0")
            self.end_headers()
            if self.command == "HEAD":
                return
            while True:
                chunk = response.read(BLOCK)
                if not chunk:
                    break
                self.wfile.write(chunk)

        def handle_any(self):
            if self.path in ("/v2/", "/v2"):
                if self.headers.get("Authorization") != expected:
                    return self.error(401, "UNAUTHORIZED", "Not Authorized", [("WWW-Authenticate", realm)])
                backend, response = self.forward()
                return self.relay(response)
            if self.headers.get("Authorization") != expected:
                return self.error(401, "UNAUTHORIZED", "Not Authorized", [("WWW-Authenticate", realm)])
            match = PATH.match(self.path)
            if not match:
                return self.error(404, "UNSUPPORTED", "The operation is unsupported.")
            name = match.group("name")
            repo = self.repository(name)
            if repo is None:
                return self.error(
                    404,
                    "NAME_UNKNOWN",
                    f"The repository with name '{name}' does not exist in the registry with id '{host['account']}'",
                )
            if match.group("kind") == "manifests" and self.command == "PUT":
                return self.put_manifest(repo, name, match.group("rest") or "")
            backend, response = self.forward()
            self.relay(response)

        def put_manifest(self, repo, name, reference):
            body = b"".join(self.read_body())
            if len(body) > MANIFEST_LIMIT:
                return self.error(400, "MANIFEST_INVALID", "manifest invalid")
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            tag = None if reference.startswith("sha256:") else reference
            if tag and immutable(repo, tag):
                existing = self.tag_digest(name, tag)
                if existing and existing != digest:
                    return self.error(
                        400,
                        "TAG_INVALID",
                        f"The image tag '{tag}' already exists in the '{name}' repository and "
                        "cannot be overwritten because the repository is immutable.",
                    )
            # A digest already in the repository (another tag of the same image) was scanned
            # when it first came: ECR scans an image once per push of new content.
            seen = self.has_digest(name, digest)
            backend, response = self.forward(body)
            if response.status != 201:
                return self.relay(response)
            media_type = self.headers.get("Content-Type", "").split(";")[0].strip()
            put = {
                "registryId": host["account"],
                "repositoryName": name,
                "imageManifest": body.decode("utf-8"),
                "imageDigest": digest,
            }
            if media_type:
                put["imageManifestMediaType"] = media_type
            if tag:
                put["imageTag"] = tag
            try:
                with lock:
                    ecr.put_image(**put)
            except botocore.exceptions.ClientError as e:
                if e.response["Error"]["Code"] != "ImageAlreadyExistsException":
                    raise
            # ECR scans images, not the lists or indexes of a multi-platform image.
            is_list = media_type in (
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.oci.image.index.v1+json",
            )
            if repo.get("imageScanningConfiguration", {}).get("scanOnPush") and not is_list and not seen:
                with lock:
                    ecr.start_image_scan(
                        registryId=host["account"],
                        repositoryName=name,
                        imageId={"imageDigest": digest},
                    )
            self.relay(response)

        def do(self):
            try:
                self.handle_any()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            except Exception as e:  # a fault of this stand-in: say so, as a 500
                sys.stderr.write(f"{host['name']}: {self.command} {self.path}: {e!r}\n")
                try:
                    self.error(500, "INTERNAL", f"local ECR data plane: {e}")
                except OSError:
                    pass
                self.close_connection = True

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do

    return Handler


def immutable(repo, tag):
    """Whether `tag` may not move in `repo`, by its mutability and exclusion filters."""
    setting = repo.get("imageTagMutability", "MUTABLE")
    filters = [f.get("filter", "") for f in repo.get("imageTagMutabilityExclusionFilters", [])]
    excluded = any(fnmatch.fnmatchcase(tag, f) for f in filters)
    if setting == "IMMUTABLE":
        return True
    if setting == "IMMUTABLE_WITH_EXCLUSION":
        return not excluded
    if setting == "MUTABLE_WITH_EXCLUSION":
        return excluded
    return False


def main():
    with open(sys.argv[1]) as f:
        config = json.load(f)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config["cert"], config["key"])
    servers = []
    for host in config["hosts"]:
        server = http.server.ThreadingHTTPServer((host["listen"], host["port"]), handler_for(config, host))
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        servers.append(server)
        sys.stderr.write(f"serving {host['name']} on https://{host['listen']}:{host['port']} -> {host['backend']}\n")
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
