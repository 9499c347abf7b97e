#!/usr/bin/env bash
# One-shot setup for the compose stack (the `setup` service runs it, then exits 0):
#   1. sets the password of the built-in kibana_system user (Kibana refuses the `elastic` superuser);
#   2. creates the role trayllm_writer: write-only to the trayllm data streams;
#   3. creates the user trayllm_logstash with that role (Logstash and Filebeat log in as it).
# Safe to run again: each call sets the same values.
#
# Needs: ES_URL, ELASTIC_PASSWORD, KIBANA_PASSWORD, LOGSTASH_INTERNAL_PASSWORD.
set -euo pipefail

ES_URL="${ES_URL:-http://elasticsearch:9200}"
WRITER_ROLE="trayllm_writer"
WRITER_USER="${LOGSTASH_INTERNAL_USER:-trayllm_logstash}"

for var in ELASTIC_PASSWORD KIBANA_PASSWORD LOGSTASH_INTERNAL_PASSWORD; do
  value="${!var:-}"
  if [ -z "$value" ]; then
    echo "setup: $var is empty: set it in .env (see .env.example)" >&2
    exit 1
  fi
  # The passwords go into JSON bodies below unescaped: refuse characters that would break them.
  case "$value" in
    *\"* | *\\*)
      echo "setup: $var contains a double quote or a backslash; pick a password without them" >&2
      exit 1
      ;;
  esac
  if [ "${#value}" -lt 6 ]; then
    echo "setup: $var is shorter than 6 characters (Elasticsearch refuses it)" >&2
    exit 1
  fi
done

# call METHOD PATH BODY: one authenticated request; fails the script unless Elasticsearch says 200.
call() {
  local method="$1" path="$2" body="$3" status
  status="$(curl -sS -o /tmp/setup-response -w '%{http_code}' -u "elastic:${ELASTIC_PASSWORD}" \
    -X "$method" "${ES_URL}${path}" -H 'Content-Type: application/json' -d "$body")" || status="000"
  if [ "$status" != "200" ]; then
    echo "setup: $method $path answered $status: $(cat /tmp/setup-response 2>/dev/null)" >&2
    exit 1
  fi
}

echo "setup: waiting for Elasticsearch at ${ES_URL}"
for _ in $(seq 1 120); do
  if curl -sf -o /dev/null -u "elastic:${ELASTIC_PASSWORD}" "${ES_URL}/_cluster/health?wait_for_status=yellow&timeout=5s"; then
    break
  fi
  sleep 2
done

echo "setup: kibana_system password"
call POST /_security/user/kibana_system/_password "{\"password\":\"${KIBANA_PASSWORD}\"}"

# create_doc: append only (data streams accept nothing else); auto_configure: create the data
# stream on the first write, from the index template `trayllm elastic setup` installed.
# monitor: the Logstash output reads the cluster's version and license before it writes.
echo "setup: role ${WRITER_ROLE}"
call PUT "/_security/role/${WRITER_ROLE}" '{
  "cluster": ["monitor"],
  "indices": [
    {"names": ["logs-trayllm.*"], "privileges": ["create_doc", "auto_configure"]}
  ]
}'

echo "setup: user ${WRITER_USER}"
call PUT "/_security/user/${WRITER_USER}" "{
  \"password\": \"${LOGSTASH_INTERNAL_PASSWORD}\",
  \"roles\": [\"${WRITER_ROLE}\"],
  \"full_name\": \"trayllm records writer (Logstash, Filebeat)\"
}"

echo "setup: done"
