-- Email templates. Each save of a name is a new immutable version, numbered from 1 per
-- (workspace, name); messages and campaigns refer to a fixed version, so what was sent can always
-- be shown again. The unique index also serves "latest version" look-ups (a backward scan).
CREATE TABLE templates (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$'),
    version       int NOT NULL CHECK (version >= 1),
    subject       text NOT NULL,
    html          text NOT NULL DEFAULT '',
    text          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name, version)
);

-- Versions are immutable: a change is a new version. (Deleting a workspace still cascades.)
CREATE FUNCTION templates_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'template versions are immutable; store a new version instead'
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER templates_immutable BEFORE UPDATE ON templates
    FOR EACH ROW EXECUTE FUNCTION templates_refuse_update();
