-- Sentence vectors of each chunk (activities/research/sentence_vectors.py): one unit vector
-- per unit research reads in the chunk (activities/research/synthesis.py: passage_units),
-- embedded at ingestion. sentence_spans holds the flat
-- (start, end) pairs, sentence_vectors the float16 rows in the same order. NULL for chunks
-- ingested before: research computes and stores them the first time it reads one.
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS sentence_spans INTEGER[];
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS sentence_vectors BYTEA;
