-- Every statement that makes jobs ready notifies the schema's channel, so that idle workers of
-- every process claim at once instead of at their next poll. The channel name is short and
-- fixed per schema (a schema name may be longer than a channel name may be).
CREATE FUNCTION solidq_notify_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('solidq_ready_' || left(md5(TG_TABLE_SCHEMA), 16), '');
    RETURN NULL;
END
$$;
CREATE TRIGGER solidq_ready_inserted AFTER INSERT ON solidq_ready_executions
    FOR EACH STATEMENT EXECUTE FUNCTION solidq_notify_ready();
