package campaigns

// FanOutArgs is the River job that expands a campaign's audience into campaign_recipients rows
// and SendBatchArgs jobs, page by page, from the campaign's committed resume point.
type FanOutArgs struct {
	CampaignID int64 `json:"campaign_id"`
}

// Kind is the job kind stored in river_job.
func (FanOutArgs) Kind() string { return "campaigns.fan_out" }

// RequeueArgs is the River job that inserts SendBatchArgs jobs for a campaign's open recipients
// (queued, deferred, or sending with an expired claim): on resume, and when the sweeper finds
// work that no job holds any more.
type RequeueArgs struct {
	CampaignID int64 `json:"campaign_id"`
}

// Kind is the job kind stored in river_job.
func (RequeueArgs) Kind() string { return "campaigns.requeue" }

// SendBatchArgs is the River job that sends the open recipients of one campaign whose ids lie in
// [FirstID, LastID]. Two jobs may name overlapping ranges (a requeue after a crash): recipients
// are claimed one statement per batch, so each is handed to SMTP by one job only.
type SendBatchArgs struct {
	CampaignID int64 `json:"campaign_id"`
	FirstID    int64 `json:"first_id"`
	LastID     int64 `json:"last_id"`
}

// Kind is the job kind stored in river_job.
func (SendBatchArgs) Kind() string { return "campaigns.send_batch" }

// QueueCampaigns is the River queue of campaign jobs (fan-out, requeue, batches), apart from the
// transactional queue so a campaign never delays a password reset.
const QueueCampaigns = "campaigns"
