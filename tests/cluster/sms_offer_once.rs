//! A mobile operator is texted once per offer, not once per node: only the node that leads
//! routing texts, whichever node the chat runs on.

use std::time::Duration;

use tandem::routing::password;

use crate::nodes::{Cluster, PATIENCE};
use crate::routing_across_nodes::open_chat;
use crate::sms::FakeProvider;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_is_texted_once_per_offer_on_three_nodes() {
    let mut provider = FakeProvider::start().await;
    let hash = password::hash("desk");
    let config = format!(
        "[sms]\nurl = \"{}\"\n\
         [[agents]]\nname = \"olga\"\npassword_hash = \"{hash}\"\ndepartments = [\"claims\"]\n\
         mobile = \"+15550101\"\nmobile_mode = \"on\"\n",
        provider.url()
    );
    let cluster = Cluster::start_with(3, &config).await;

    // Two chats on two nodes: one text each.
    open_chat(&cluster, 0, "first").await;
    open_chat(&cluster, 2, "second").await;
    let mut texts = Vec::new();
    for _ in 0..2 {
        let sms = provider.next(PATIENCE).await;
        assert_eq!(sms.to(), "+15550101");
        texts.push(sms.link());
    }
    assert_ne!(texts[0], texts[1], "one link per offer");
    if let Some(extra) = provider.none_for(Duration::from_secs(3)).await {
        panic!("texted again: {:?} after {texts:?}", extra.text());
    }
}
