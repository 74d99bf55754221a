// The API's shapes the page reads (stratmaster/contracts/research.py, library.py; the routers).

export interface Citation {
  chunk_id: string;
  document_id: string;
  start: number;
  end: number;
  quote: string;
  title?: string | null;
  url?: string | null;
  score: number;
  source: string;
}

export interface Claim {
  claim_id: string;
  ordinal: number;
  text: string;
  confidence: number;
  supporting: Citation[];
  contradicting: Citation[];
  flagged: boolean;
  flag_reason?: string | null;
  below_bar_reason?: string | null;
}

export interface AnswerSentence {
  text: string;
  citations: Citation[];
}

export interface Answer {
  question: string;
  text: string;
  sentences: AnswerSentence[];
  confidence: number;
  method: string;
}

export type Outcome = "answered" | "contested" | "insufficient_evidence";

export interface ResearchResult {
  workflow_id: string;
  mission: string;
  query: string;
  status: string;
  subquestions: string[];
  claims: Claim[];
  outcome?: Outcome | null;
  answer?: Answer | null;
  subanswers: Answer[];
  below_bar: Claim[];
  closest_evidence: Citation[];
  notes: string[];
  cached: boolean;
}

export interface ResearchStatus {
  workflow_id: string;
  mission: string | null;
  status: string;
  start_time?: string | null;
  close_time?: string | null;
  result?: ResearchResult | null;
  error?: string | null;
}

export interface MissionSummary {
  mission: string;
  name?: string | null;
  status: string;
  active_version?: string | null;
}

export interface MissionView {
  summary: MissionSummary;
  versions: string[];
  permissions: ("read" | "write" | "admin")[];
}

export interface Me {
  username: string;
  roles: string[];
  platform_admin: boolean;
  dev: boolean;
  mission?: string | null;
  permissions?: ("read" | "write" | "admin")[] | null;
}

export interface DocumentEntry {
  document_id: string;
  source: string;
  title?: string | null;
  content_type: string;
  size_bytes: number;
  chunk_count: number;
  status: string;
  created_at?: string | null;
}

export interface IngestionFailure {
  batch_id: string;
  source: string;
  reason_type: string;
  reason: string;
  created_at?: string | null;
}

export interface DocumentListing {
  mission: string;
  total: number;
  offset: number;
  documents: DocumentEntry[];
  failures: IngestionFailure[];
  ingesting: { workflow_id: string; start_time?: string | null }[];
}

export interface Excerpt {
  document_id: string;
  title?: string | null;
  source: string;
  char_count: number;
  text_start: number;
  text_end: number;
  text: string;
  start: number;
  end: number;
}

export interface ResearchEntry {
  workflow_id: string;
  query: string;
  status: string;
  outcome?: Outcome | null;
  created_at?: string | null;
  completed_at?: string | null;
}

export interface ResearchList {
  mission: string;
  total: number;
  offset: number;
  runs: ResearchEntry[];
}

export interface SourceSummary {
  source_id: string;
  kind: string;
  location: string;
  interval_seconds: number;
  status?: string;
  last_sync_status?: string | null;
  last_sync_at?: string | null;
  syncing?: string | null;
  last_sync_error?: string | null;
  files?: Record<string, number>;
}

export interface ManifestEntry {
  path: string;
  status: string;
  reason_type?: string | null;
  reason?: string | null;
}
