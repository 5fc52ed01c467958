// The seed's own test (section "4. 测试方式"): this XML posted to /send, the page connected as
// userId=1. Shared by the core and browser tests that run it.

/** The XML the seed posts to /send, exactly as written there. */
export const SEED_XML = `<xml>
  <ToUserName>1</ToUserName>
  <FromUserName>魏秀兰</FromUserName>
  <CreateTime>1976-04-10 12:21:47</CreateTime>
  <MsgType>enim</MsgType>
  <Content>occaecat ut in fugiat dolor</Content>
  <MsgId>19</MsgId>
  <MsgDataId>27</MsgDataId>
  <Idx>74</Idx>
</xml>`;
