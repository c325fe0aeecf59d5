# nginx.sh - sourced by the benchmark scripts: the reference target they
# share, nginx with one worker answering `return 200` for
# POST /SendHeartbeat on loopback, keep-alive without limits, no access log.

# nginx_conf DIR PORT: writes DIR/nginx.conf (logs and temp files in DIR),
# to run in the foreground with `nginx -c DIR/nginx.conf -p DIR`.
nginx_conf() {
  local dir=$1 port=$2
  mkdir -p "$dir/logs" "$dir/tmp"
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_timeout 65s;
  keepalive_requests 10000000;
  client_body_temp_path $dir/tmp;
  server {
    listen 127.0.0.1:$port backlog=4096;
    location = /SendHeartbeat { return 200; }
    location / { return 404; }
  }
}
CONF
}
