-- A broadcast's text is any Unicode the protocol carries, U+0000 included
-- (the embedded store keeps it byte for byte), which a TEXT column refuses
-- ("invalid byte sequence for encoding UTF8: 0x00"): keep its UTF-8 bytes.
ALTER TABLE broadcasts ALTER COLUMN text TYPE BYTEA USING convert_to(text, 'UTF8');
