-- Stream ids were {kind}-{tenant}-{id}, ambiguous when a tenant id contains '-' (tenant 'sa' +
-- device 'x-col1' and tenant 'sa-x' + device 'col1' were one stream). From now on the
-- separator after a tenant id that contains '-' is ':' (ids never contain ':'); see
-- fleetpulse.common.eventstore.stream_id. Existing streams of such tenants move to the new
-- form. The tenant_id column says where the tenant id ends, so the rewrite is exact. No other
-- table stores stream ids (projections key on tenant and entity ids, checkpoints on positions).
UPDATE events
   SET stream_id = split_part(stream_id, '-', 1) || '-' || tenant_id || ':'
                   || substr(stream_id, length(split_part(stream_id, '-', 1)) + length(tenant_id) + 3)
 WHERE strpos(tenant_id, '-') > 0
   AND strpos(stream_id, ':') = 0
   AND length(stream_id) > length(split_part(stream_id, '-', 1)) + length(tenant_id) + 2
   AND left(stream_id, length(split_part(stream_id, '-', 1)) + length(tenant_id) + 2)
       = split_part(stream_id, '-', 1) || '-' || tenant_id || '-';
