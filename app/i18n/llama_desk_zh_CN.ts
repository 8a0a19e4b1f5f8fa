<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="zh_CN">
<context>
    <name>AboutDialog</name>
    <message>
        <source>Send</source>
        <translation>发送</translation>
    </message>
    <message>
        <source>New line</source>
        <translation>换行</translation>
    </message>
    <message>
        <source>Stop the answer</source>
        <translation>停止回答</translation>
    </message>
    <message>
        <source>New chat</source>
        <translation>新对话</translation>
    </message>
    <message>
        <source>Export the chat</source>
        <translation>导出对话</translation>
    </message>
    <message>
        <source>Models</source>
        <translation>模型</translation>
    </message>
    <message>
        <source>Settings</source>
        <translation>设置</translation>
    </message>
    <message>
        <source>Quit</source>
        <translation>退出</translation>
    </message>
    <message>
        <source>This CPU has no {0}: llama-desk works, but answers come several times slower than on a CPU with them.</source>
        <translation>这颗 CPU 没有 {0}：llama-desk 仍可使用，但回答会比有这些指令的 CPU 慢好几倍。</translation>
    </message>
    <message>
        <source>About llama-desk</source>
        <translation>关于 llama-desk</translation>
    </message>
    <message>
        <source>Open the log folder</source>
        <translation>打开日志文件夹</translation>
    </message>
    <message>
        <source>Python {0}, Qt {1}, {2}</source>
        <translation>Python {0}，Qt {1}，{2}</translation>
    </message>
    <message>
        <source>The computer is being checked…</source>
        <translation>正在检查这台电脑…</translation>
    </message>
    <message>
        <source>This computer</source>
        <translation>这台电脑</translation>
    </message>
    <message>
        <source>CPU: {0} ({1} cores, {2} threads)</source>
        <translation>CPU：{0}（{1} 核，{2} 线程）</translation>
    </message>
    <message>
        <source>Features: {0}</source>
        <translation>指令集：{0}</translation>
    </message>
    <message>
        <source>Memory: {0}</source>
        <translation>内存：{0}</translation>
    </message>
    <message>
        <source>Keyboard</source>
        <translation>键盘</translation>
    </message>
    <message>
        <source>Files</source>
        <translation>文件</translation>
    </message>
    <message>
        <source>Data: {0}</source>
        <translation>数据：{0}</translation>
    </message>
    <message>
        <source>Logs: {0}</source>
        <translation>日志：{0}</translation>
    </message>
</context>
<context>
    <name>AddModelDialog</name>
    <message>
        <source>Add a model</source>
        <translation>添加模型</translation>
    </message>
    <message>
        <source>A name for the list (e.g. my fine-tuned LLaMA3)</source>
        <translation>在列表中显示的名称（例如：我微调的 LLaMA3）</translation>
    </message>
</context>
<context>
    <name>ChatActions</name>
    <message>
        <source>Export conversation</source>
        <translation>导出对话</translation>
    </message>
    <message>
        <source>Markdown (*.md);;JSON (*.json)</source>
        <translation>Markdown (*.md);;JSON (*.json)</translation>
    </message>
    <message>
        <source>Export all conversations</source>
        <translation>导出全部对话</translation>
    </message>
    <message>
        <source>JSON (*.json)</source>
        <translation>JSON (*.json)</translation>
    </message>
    <message>
        <source>Import conversations</source>
        <translation>导入对话</translation>
    </message>
    <message>
        <source>Exported to {0}</source>
        <translation>已导出到 {0}</translation>
    </message>
    <message>
        <source>{0} conversation(s) exported.</source>
        <translation>已导出 {0} 个对话。</translation>
    </message>
    <message>
        <source>{0} conversation(s) imported.</source>
        <translation>已导入 {0} 个对话。</translation>
    </message>
    <message>
        <source>Import failed: {0}</source>
        <translation>导入失败：{0}</translation>
    </message>
    <message>
        <source>Export failed: {0}</source>
        <translation>导出失败：{0}</translation>
    </message>
</context>
<context>
    <name>ChatSession</name>
    <message>
        <source>You</source>
        <translation>你</translation>
    </message>
    <message>
        <source>Assistant</source>
        <translation>助手</translation>
    </message>
</context>
<context>
    <name>Composer</name>
    <message>
        <source>Type a message. Enter sends, Shift+Enter starts a new line.</source>
        <translation>输入消息。Enter 发送，Shift+Enter 换行。</translation>
    </message>
    <message>
        <source>Stop</source>
        <translation>停止</translation>
    </message>
    <message>
        <source>Send</source>
        <translation>发送</translation>
    </message>
    <message>
        <source>Stop the answer now</source>
        <translation>立即停止回答</translation>
    </message>
    <message>
        <source>Send (Enter)</source>
        <translation>发送 (Enter)</translation>
    </message>
</context>
<context>
    <name>ConversationList</name>
    <message>
        <source>New chat</source>
        <translation>新对话</translation>
    </message>
    <message>
        <source>Search conversations</source>
        <translation>搜索对话</translation>
    </message>
    <message>
        <source>{0} (being answered)</source>
        <translation>{0}（正在回答）</translation>
    </message>
    <message>
        <source>Rename…</source>
        <translation>重命名…</translation>
    </message>
    <message>
        <source>Rename this conversation (F2)</source>
        <translation>重命名这个对话（F2）</translation>
    </message>
    <message>
        <source>Export…</source>
        <translation>导出…</translation>
    </message>
    <message>
        <source>Save this conversation as Markdown or JSON</source>
        <translation>把这个对话保存为 Markdown 或 JSON</translation>
    </message>
    <message>
        <source>Delete…</source>
        <translation>删除…</translation>
    </message>
    <message>
        <source>Delete this conversation (Del)</source>
        <translation>删除这个对话（Del）</translation>
    </message>
    <message>
        <source>Rename conversation</source>
        <translation>重命名对话</translation>
    </message>
    <message>
        <source>Title:</source>
        <translation>标题：</translation>
    </message>
    <message>
        <source>Delete conversation</source>
        <translation>删除对话</translation>
    </message>
    <message>
        <source>Delete “{0}”? Its text is erased from the disk; this cannot be undone.</source>
        <translation>删除“{0}”？其内容将从磁盘上彻底抹除，无法恢复。</translation>
    </message>
</context>
<context>
    <name>ConversationSettingsDialog</name>
    <message>
        <source>Conversation settings: {0}</source>
        <translation>对话设置：{0}</translation>
    </message>
    <message>
        <source>Use the default system prompt</source>
        <translation>使用默认系统提示词</translation>
    </message>
    <message>
        <source>How the assistant should behave, e.g. “Answer in Chinese.”</source>
        <translation>助手应当如何表现，例如“用中文回答。”</translation>
    </message>
    <message>
        <source>System prompt</source>
        <translation>系统提示词</translation>
    </message>
</context>
<context>
    <name>DiskUseRow</name>
    <message>
        <source>Off</source>
        <translation>关闭</translation>
    </message>
    <message>
        <source>Clear</source>
        <translation>清除</translation>
    </message>
    <message>
        <source>{0:.2f} GB used</source>
        <translation>已用 {0:.2f} GB</translation>
    </message>
    <message>
        <source>{0:.1f} MB used</source>
        <translation>已用 {0:.1f} MB</translation>
    </message>
</context>
<context>
    <name>DownloadPanel</name>
    <message>
        <source>Download</source>
        <translation>下载</translation>
    </message>
    <message>
        <source>Pause</source>
        <translation>暂停</translation>
    </message>
    <message>
        <source>Cancel</source>
        <translation>取消</translation>
    </message>
    <message>
        <source>Download {0} into {1}. Mirrors are tried in turn; an interrupted download resumes where it stopped.</source>
        <translation>将 {0} 下载到 {1}。会依次尝试各个镜像；中断的下载会从中断处继续。</translation>
    </message>
    <message>
        <source>Starting…</source>
        <translation>正在开始…</translation>
    </message>
    <message>
        <source>{0} is still downloading. Quit now and pause the download (it resumes where it stopped when you download it again), or keep it running?</source>
        <translation>{0} 仍在下载。现在退出并暂停下载（再次下载时从中断处继续），还是让它继续运行？</translation>
    </message>
    <message>
        <source>A download is running</source>
        <translation>正在下载</translation>
    </message>
    <message>
        <source>Quit and pause the download</source>
        <translation>退出并暂停下载</translation>
    </message>
    <message>
        <source>Keep running</source>
        <translation>不退出，继续下载</translation>
    </message>
    <message>
        <source>It goes on when this window is closed: the status bar shows it.</source>
        <translation>关闭此窗口后下载仍会继续：状态栏会显示进度。</translation>
    </message>
    <message>
        <source>Resume</source>
        <translation>继续</translation>
    </message>
    <message>
        <source>{0}: {1} of {2} · {3}/s · {4} left</source>
        <translation>{0}：{1} / {2} · {3}/秒 · 剩余 {4}</translation>
    </message>
    <message>
        <source>{0}: paused at {1}</source>
        <translation>{0}：已暂停于 {1}</translation>
    </message>
    <message>
        <source>Done: {0} file(s) verified and in place.</source>
        <translation>完成：{0} 个文件已校验并就位。</translation>
    </message>
</context>
<context>
    <name>EngineWorker</name>
    <message>
        <source>{0} failed unexpectedly ({1}: {2}). The details are in the log file.</source>
        <translation>{0}意外失败（{1}：{2}）。详情见日志文件。</translation>
    </message>
    <message>
        <source>Loading was cancelled.</source>
        <translation>加载已取消。</translation>
    </message>
    <message>
        <source>The computer ran out of memory while loading the model. Close other programs, or choose 8-bit weights.</source>
        <translation>加载模型时电脑内存不足。请关闭其他程序，或选择 8 位权重。</translation>
    </message>
    <message>
        <source>Loading the model</source>
        <translation>加载模型</translation>
    </message>
    <message>
        <source>This model&apos;s weights alone take {0:.1f} GB of memory and only {1:.1f} GB is free. Close other programs, or choose 8-bit weights or a smaller model.</source>
        <translation>仅这个模型的权重就需要 {0:.1f} GB 内存，而只有 {1:.1f} GB 可用。请关闭其他程序，或选择 8 位权重或更小的模型。</translation>
    </message>
    <message>
        <source>No model is loaded: choose one in Settings &gt; Model.</source>
        <translation>尚未加载模型：请在“设置 &gt; 模型”中选择一个。</translation>
    </message>
    <message>
        <source>The answer</source>
        <translation>回答</translation>
    </message>
</context>
<context>
    <name>FirstRunDialog</name>
    <message>
        <source>Welcome to llama-desk</source>
        <translation>欢迎使用 llama-desk</translation>
    </message>
    <message>
        <source>Keep the built-in model</source>
        <translation>继续使用内置模型</translation>
    </message>
    <message>
        <source>Use this model</source>
        <translation>使用此模型</translation>
    </message>
    <message>
        <source>{0}: about {1} of memory as stored, {2} with 8-bit weights, {3} with 4-bit weights</source>
        <translation>{0}：按原格式约需 {1} 内存，8 位权重约需 {2}，4 位权重约需 {3}</translation>
    </message>
    <message>
        <source>&lt;p&gt;llama-desk runs LLaMA2 and LLaMA3 on this computer, offline.&lt;/p&gt;&lt;p&gt;The small built-in model is loading now, so you can start chatting at once. For better answers, choose a LLaMA chat model below and download it (13-16 GB), or choose files you have.{3}&lt;/p&gt;&lt;p&gt;This PC has {0} of memory and {1} free in the models folder. {2}.&lt;/p&gt;</source>
        <translation>&lt;p&gt;llama-desk 在这台电脑上离线运行 LLaMA2 和 LLaMA3。&lt;/p&gt;&lt;p&gt;小型内置模型正在加载，你可以马上开始聊天。想要更好的回答，请在下面选择一个 LLaMA 对话模型并下载（13-16 GB），或选择你已有的文件。{3}&lt;/p&gt;&lt;p&gt;这台电脑有 {0} 内存，模型文件夹所在磁盘还有 {1} 可用空间。{2}。&lt;/p&gt;</translation>
    </message>
    <message>
        <source>{0}: base models. A base model continues the text it is given; it is not a chat assistant, and its answers are weaker than a chat model&apos;s.</source>
        <translation>{0} 是基础模型。基础模型只会续写给它的文本，不是对话助手，回答也不如对话模型。</translation>
    </message>
</context>
<context>
    <name>GenerationForm</name>
    <message>
        <source>0 always picks the most likely token</source>
        <translation>0 表示总是选择可能性最大的词元</translation>
    </message>
    <message>
        <source>Only the k most likely tokens are considered (0: off)</source>
        <translation>只考虑可能性最大的 k 个词元（0：关闭）</translation>
    </message>
    <message>
        <source>Smallest set of tokens whose probability adds up to p (1: off)</source>
        <translation>概率累计达到 p 的最小词元集合（1：关闭）</translation>
    </message>
    <message>
        <source>Above 1 makes repeating recent words less likely (1: off)</source>
        <translation>大于 1 时降低重复最近用词的可能性（1：关闭）</translation>
    </message>
    <message>
        <source>Random</source>
        <translation>随机</translation>
    </message>
    <message>
        <source>The same seed and settings give the same answer</source>
        <translation>相同的种子和设置会得到相同的回答</translation>
    </message>
    <message>
        <source>Automatic (while it pays)</source>
        <translation>自动（有加速时才用）</translation>
    </message>
    <message>
        <source>On</source>
        <translation>开启</translation>
    </message>
    <message>
        <source>Off</source>
        <translation>关闭</translation>
    </message>
    <message>
        <source>Guesses the next words from the conversation and checks several at once: faster where an answer repeats its question (code, quotes), same answers</source>
        <translation>从对话中猜测接下来的词，并一次核对多个：回答重复提问内容时（代码、引文）更快，回答完全不变</translation>
    </message>
    <message>
        <source>Temperature</source>
        <translation>温度</translation>
    </message>
    <message>
        <source>Top-k</source>
        <translation>Top-k</translation>
    </message>
    <message>
        <source>Top-p</source>
        <translation>Top-p</translation>
    </message>
    <message>
        <source>Repetition penalty</source>
        <translation>重复惩罚</translation>
    </message>
    <message>
        <source>Maximum answer length (tokens)</source>
        <translation>最长回答（词元）</translation>
    </message>
    <message>
        <source>Seed</source>
        <translation>随机种子</translation>
    </message>
    <message>
        <source>Lookup decoding</source>
        <translation>查找解码（加速）</translation>
    </message>
</context>
<context>
    <name>MainWindow</name>
    <message>
        <source>Compiling</source>
        <translation>正在编译</translation>
    </message>
    <message>
        <source>Preparing the built-in model</source>
        <translation>正在准备内置模型</translation>
    </message>
    <message>
        <source>Checking the checkpoint</source>
        <translation>正在检查权重文件</translation>
    </message>
    <message>
        <source>Reading weights</source>
        <translation>正在读取权重</translation>
    </message>
    <message>
        <source>New conversation</source>
        <translation>新对话</translation>
    </message>
    <message>
        <source>Conversation settings…</source>
        <translation>对话设置…</translation>
    </message>
    <message>
        <source>&amp;Chat</source>
        <translation>对话(&amp;C)</translation>
    </message>
    <message>
        <source>&amp;New chat</source>
        <translation>新对话(&amp;N)</translation>
    </message>
    <message>
        <source>&amp;Export…</source>
        <translation>导出(&amp;E)…</translation>
    </message>
    <message>
        <source>Export &amp;all conversations…</source>
        <translation>导出全部对话(&amp;A)…</translation>
    </message>
    <message>
        <source>&amp;Import conversations…</source>
        <translation>导入对话(&amp;I)…</translation>
    </message>
    <message>
        <source>&amp;Quit</source>
        <translation>退出(&amp;Q)</translation>
    </message>
    <message>
        <source>&amp;Settings</source>
        <translation>设置(&amp;S)</translation>
    </message>
    <message>
        <source>&amp;Settings…</source>
        <translation>设置(&amp;S)…</translation>
    </message>
    <message>
        <source>&amp;Model…</source>
        <translation>模型(&amp;M)…</translation>
    </message>
    <message>
        <source>M&amp;odels…</source>
        <translation>模型管理(&amp;O)…</translation>
    </message>
    <message>
        <source>&amp;Conversation settings…</source>
        <translation>对话设置(&amp;C)…</translation>
    </message>
    <message>
        <source>&amp;Help</source>
        <translation>帮助(&amp;H)</translation>
    </message>
    <message>
        <source>&amp;About llama-desk…</source>
        <translation>关于 llama-desk(&amp;A)…</translation>
    </message>
    <message>
        <source>“{0}” is still being answered: one answer is written at a time. Your message stays in the box; send it when that answer is done.</source>
        <translation>“{0}”仍在回答中：一次只能写一个回答。你的消息保留在输入框中，等那个回答结束后再发送。</translation>
    </message>
    <message>
        <source>Show it</source>
        <translation>转到该对话</translation>
    </message>
    <message>
        <source>Stop it</source>
        <translation>停止它</translation>
    </message>
    <message>
        <source>The chat could not be saved: {0}</source>
        <translation>无法保存对话：{0}</translation>
    </message>
    <message>
        <source>The chat is not saved yet ({0}). It is kept, and saved as soon as the disk takes it: free some disk space.</source>
        <translation>聊天内容尚未保存（{0}）。内容已保留，磁盘一旦可以写入就会立即保存：请腾出一些磁盘空间。</translation>
    </message>
    <message>
        <source>The chat is saved.</source>
        <translation>聊天内容已保存。</translation>
    </message>
    <message>
        <source>Copied.</source>
        <translation>已复制。</translation>
    </message>
    <message>
        <source>The settings could not be saved: {0}</source>
        <translation>无法保存设置：{0}</translation>
    </message>
    <message>
        <source>Stopping the answer…</source>
        <translation>正在停止回答…</translation>
    </message>
</context>
<context>
    <name>MarkdownView</name>
    <message>
        <source>Not opened: only web (http, https) and mail links are opened from answers.
{0}</source>
        <translation>未打开：回答中只有网页（http、https）和邮件链接可以打开。
{0}</translation>
    </message>
    <message>
        <source>Open link</source>
        <translation>打开链接</translation>
    </message>
    <message>
        <source>Open this address?

{0}</source>
        <translation>打开这个地址吗？

{0}</translation>
    </message>
    <message>
        <source>code</source>
        <translation>代码</translation>
    </message>
    <message>
        <source>Copy this code</source>
        <translation>复制这段代码</translation>
    </message>
    <message>
        <source>Copy</source>
        <translation>复制</translation>
    </message>
</context>
<context>
    <name>MessageCard</name>
    <message>
        <source>Copy</source>
        <translation>复制</translation>
    </message>
    <message>
        <source>Copy this message</source>
        <translation>复制这条消息</translation>
    </message>
    <message>
        <source>Edit</source>
        <translation>编辑</translation>
    </message>
    <message>
        <source>Edit this question and answer it again</source>
        <translation>编辑这个问题并重新回答</translation>
    </message>
    <message>
        <source>Regenerate</source>
        <translation>重新生成</translation>
    </message>
    <message>
        <source>Write this answer again</source>
        <translation>重新生成这个回答</translation>
    </message>
    <message>
        <source>Continue</source>
        <translation>继续</translation>
    </message>
    <message>
        <source>Go on writing this answer where it stopped</source>
        <translation>从中断处继续写这个回答</translation>
    </message>
    <message>
        <source>Left out: no longer fits in the model&apos;s context.</source>
        <translation>已略去：超出了模型的上下文长度。</translation>
    </message>
    <message>
        <source>Cancel</source>
        <translation>取消</translation>
    </message>
    <message>
        <source>Send</source>
        <translation>发送</translation>
    </message>
    <message>
        <source>The version before</source>
        <translation>上一个版本</translation>
    </message>
    <message>
        <source>The version after</source>
        <translation>下一个版本</translation>
    </message>
    <message>
        <source>the saved conversation state was reused</source>
        <translation>已复用保存的对话状态</translation>
    </message>
    <message>
        <source>Writing…</source>
        <translation>正在生成…</translation>
    </message>
</context>
<context>
    <name>MessageView</name>
    <message>
        <source>1 token</source>
        <translation>1 个词元</translation>
    </message>
    <message>
        <source>{0} tokens</source>
        <translation>{0} 个词元</translation>
    </message>
    <message>
        <source>{0:.1f} tokens/s</source>
        <translation>{0:.1f} 词元/秒</translation>
    </message>
    <message>
        <source>first token {0:.2f} s</source>
        <translation>首词元 {0:.2f} 秒</translation>
    </message>
    <message>
        <source>Reading the conversation: {0:,} / {1:,} tokens</source>
        <translation>正在读取对话：{0:,} / {1:,} 个词元</translation>
    </message>
    <message>
        <source>, ~{0} s left</source>
        <translation>，约剩 {0} 秒</translation>
    </message>
    <message>
        <source>Stopped: this answer is incomplete.</source>
        <translation>已停止：此回答不完整。</translation>
    </message>
    <message>
        <source>This answer failed: {0}</source>
        <translation>此回答失败：{0}</translation>
    </message>
    <message>
        <source>Incomplete: the app closed while this answer was being written.</source>
        <translation>不完整：生成此回答时程序被关闭了。</translation>
    </message>
    <message>
        <source>{0} earlier message(s) no longer fit in the model&apos;s context ({1} tokens) and were left out of the latest answer.</source>
        <translation>较早的 {0} 条消息超出了模型的上下文（{1} 个词元），生成最新回答时已被略去。</translation>
    </message>
</context>
<context>
    <name>ModelPicker</name>
    <message>
        <source>The model answering: switch to another one on this PC</source>
        <translation>正在回答的模型：切换到这台电脑上的其他模型</translation>
    </message>
    <message>
        <source>Manage models…</source>
        <translation>管理模型…</translation>
    </message>
    <message>
        <source>Other files</source>
        <translation>其他文件</translation>
    </message>
</context>
<context>
    <name>ModelSetupForm</name>
    <message>
        <source>Built-in: SmolLM2-135M-Instruct (chat; small, no download)</source>
        <translation>内置：SmolLM2-135M-Instruct（对话；小巧，无需下载）</translation>
    </message>
    <message>
        <source>Chat models answer questions; base models only continue a text</source>
        <translation>对话模型回答问题；基础模型只会续写文本</translation>
    </message>
    <message>
        <source>Checkpoint</source>
        <translation>权重文件</translation>
    </message>
    <message>
        <source>Checkpoints (*.ckpt *.safetensors);;All files (*)</source>
        <translation>权重文件 (*.ckpt *.safetensors);;所有文件 (*)</translation>
    </message>
    <message>
        <source>Tokenizer</source>
        <translation>分词器</translation>
    </message>
    <message>
        <source>Tokenizer (*.model *.json);;All files (*)</source>
        <translation>分词器 (*.model *.json);;所有文件 (*)</translation>
    </message>
    <message>
        <source>Config</source>
        <translation>配置</translation>
    </message>
    <message>
        <source>Config (*.yaml *.yml);;All files (*)</source>
        <translation>配置 (*.yaml *.yml);;所有文件 (*)</translation>
    </message>
    <message>
        <source>Models folder</source>
        <translation>模型文件夹</translation>
    </message>
    <message>
        <source>Where downloads go and where LLaMA2/LLaMA3 files are looked for by default (e.g. a drive with room for 16 GB)</source>
        <translation>下载的模型保存在这里，默认也从这里查找 LLaMA2/LLaMA3 文件（例如选一个有 16 GB 空间的磁盘）</translation>
    </message>
    <message>
        <source>Set by the environment variable {0}</source>
        <translation>由环境变量 {0} 指定</translation>
    </message>
    <message>
        <source>Automatic</source>
        <translation>自动</translation>
    </message>
    <message>
        <source>As stored in the file</source>
        <translation>与文件中相同</translation>
    </message>
    <message>
        <source>8-bit (int8, cpu backend; about half the memory)</source>
        <translation>8 位（int8，cpu 后端；内存约减半）</translation>
    </message>
    <message>
        <source>4-bit (int4, cpu backend; under a third of the memory)</source>
        <translation>4 位（int4，cpu 后端；内存不到三分之一）</translation>
    </message>
    <message>
        <source>Automatic (one per core, fewer while other programs are busy)</source>
        <translation>自动（每个核心一个，其他程序繁忙时减少）</translation>
    </message>
    <message>
        <source>Automatic: the cpu backend times its steps and drops a thread while another program keeps a core busy (twice as fast then), taking it back when the core is free. A number fixes the count.</source>
        <translation>自动：cpu 后端会为每一步计时，当其他程序占满一个核心时减少一个线程（此时速度约快一倍），核心空闲后再恢复。填写数字则固定线程数。</translation>
    </message>
    <message>
        <source>The model&apos;s own</source>
        <translation>模型自身的长度</translation>
    </message>
    <message>
        <source>Tokens the model sees at once: less needs less memory, and older turns are left out sooner</source>
        <translation>模型一次能看到的词元数：越少越省内存，但较早的对话会更早被略去</translation>
    </message>
    <message>
        <source>Automatic (the model&apos;s own)</source>
        <translation>自动（模型自身的格式）</translation>
    </message>
    <message>
        <source>LLaMA2 chat</source>
        <translation>LLaMA2 对话</translation>
    </message>
    <message>
        <source>LLaMA3 instruct</source>
        <translation>LLaMA3 指令</translation>
    </message>
    <message>
        <source>ChatML</source>
        <translation>ChatML</translation>
    </message>
    <message>
        <source>Base model: plain User/Assistant transcript</source>
        <translation>基础模型：纯文本 User/Assistant 对话记录</translation>
    </message>
    <message>
        <source>A base model (not chat-tuned) continues text: it chats through a plain transcript that stops where the next turn would start</source>
        <translation>基础模型（未经对话微调）只会续写文本：它通过纯文本对话记录来聊天，并在下一轮开始处停止</translation>
    </message>
    <message>
        <source>Check files</source>
        <translation>检查文件</translation>
    </message>
    <message>
        <source>Model</source>
        <translation>模型</translation>
    </message>
    <message>
        <source>Backend</source>
        <translation>后端</translation>
    </message>
    <message>
        <source>Weights</source>
        <translation>权重</translation>
    </message>
    <message>
        <source>Threads</source>
        <translation>线程数</translation>
    </message>
    <message>
        <source>Context length</source>
        <translation>上下文长度</translation>
    </message>
    <message>
        <source>Chat format</source>
        <translation>对话格式</translation>
    </message>
    <message>
        <source>Download the model</source>
        <translation>下载模型</translation>
    </message>
    <message>
        <source>Hugging Face files</source>
        <translation>Hugging Face 文件</translation>
    </message>
    <message>
        <source>MindSpore checkpoint</source>
        <translation>MindSpore 检查点</translation>
    </message>
    <message>
        <source>chat</source>
        <translation>对话</translation>
    </message>
    <message>
        <source>base model: continues text, not a chat assistant</source>
        <translation>基础模型：续写文本，不是对话助手</translation>
    </message>
    <message>
        <source>kind not stated</source>
        <translation>未注明类型</translation>
    </message>
    <message>
        <source>The models folder {0} cannot be used: {1}</source>
        <translation>无法使用模型文件夹 {0}：{1}</translation>
    </message>
    <message>
        <source>The built-in model needs no files.</source>
        <translation>内置模型不需要任何文件。</translation>
    </message>
    <message>
        <source>Checking…</source>
        <translation>正在检查…</translation>
    </message>
    <message>
        <source>OK: {0} layers, hidden size {1}, vocabulary {2}, context {3}, {4:.1f} GB of {5} weights.</source>
        <translation>正常：{0} 层，隐藏维度 {1}，词表 {2}，上下文 {3}，{4:.1f} GB 的 {5} 权重。</translation>
    </message>
    <message>
        <source>The files could not be checked: {0}</source>
        <translation>无法检查这些文件：{0}</translation>
    </message>
    <message>
        <source>Press Download below to get the files.</source>
        <translation>请按下面的“下载”获取这些文件。</translation>
    </message>
</context>
<context>
    <name>ModelStatus</name>
    <message>
        <source>Starting</source>
        <translation>正在启动</translation>
    </message>
    <message>
        <source>The model is still loading; your message stays in the box. Press Enter again once it is ready (see the status bar).</source>
        <translation>模型仍在加载；你的消息保留在输入框中。加载完成后再按一次 Enter（进度见状态栏）。</translation>
    </message>
    <message>
        <source>No model is loaded: choose one in Settings &gt; Model.</source>
        <translation>尚未加载模型：请在“设置 &gt; 模型”中选择一个。</translation>
    </message>
    <message>
        <source>Still using {0}.</source>
        <translation>仍在使用 {0}。</translation>
    </message>
    <message>
        <source>Use 8-bit weights</source>
        <translation>使用 8 位权重</translation>
    </message>
    <message>
        <source>Use 4-bit weights</source>
        <translation>使用 4 位权重</translation>
    </message>
    <message>
        <source>Load as LLaMA{0}</source>
        <translation>按 LLaMA{0} 加载</translation>
    </message>
    <message>
        <source>Model settings…</source>
        <translation>模型设置…</translation>
    </message>
    <message>
        <source>Use the built-in model</source>
        <translation>使用内置模型</translation>
    </message>
    <message>
        <source>Try again</source>
        <translation>重试</translation>
    </message>
    <message>
        <source>Local API server: {0}</source>
        <translation>本地 API 服务：{0}</translation>
    </message>
</context>
<context>
    <name>ModelsDialog</name>
    <message>
        <source>{0} as stored · {1} in 8 bits · {2} in 4 bits</source>
        <translation>原格式 {0} · 8 位 {1} · 4 位 {2}</translation>
    </message>
    <message>
        <source>use 8 bits here</source>
        <translation>本机请用 8 位</translation>
    </message>
    <message>
        <source>use 4 bits here</source>
        <translation>本机请用 4 位</translation>
    </message>
    <message>
        <source>too large for this PC</source>
        <translation>这台电脑装不下</translation>
    </message>
    <message>
        <source>Models</source>
        <translation>模型</translation>
    </message>
    <message>
        <source>Models folder</source>
        <translation>模型文件夹</translation>
    </message>
    <message>
        <source>Use this folder</source>
        <translation>使用此文件夹</translation>
    </message>
    <message>
        <source>Model</source>
        <translation>模型</translation>
    </message>
    <message>
        <source>Kind</source>
        <translation>类型</translation>
    </message>
    <message>
        <source>Stored as</source>
        <translation>存储格式</translation>
    </message>
    <message>
        <source>On disk</source>
        <translation>占用磁盘</translation>
    </message>
    <message>
        <source>Memory needed</source>
        <translation>所需内存</translation>
    </message>
    <message>
        <source>Where</source>
        <translation>位置</translation>
    </message>
    <message>
        <source>Use</source>
        <translation>使用</translation>
    </message>
    <message>
        <source>Download</source>
        <translation>下载</translation>
    </message>
    <message>
        <source>Remove…</source>
        <translation>删除…</translation>
    </message>
    <message>
        <source>Add…</source>
        <translation>添加…</translation>
    </message>
    <message>
        <source>Open folder</source>
        <translation>打开文件夹</translation>
    </message>
    <message>
        <source>This PC: {0} of memory ({1} free now). The models folder has {2} free.</source>
        <translation>这台电脑：内存 {0}（当前可用 {1}）。模型文件夹所在磁盘可用 {2}。</translation>
    </message>
    <message>
        <source>Weights {0} as stored, {1} in 8 bits or {2} in 4 bits (the cpu backend), plus {3} for {5} conversations of {4} tokens at once (Settings &gt; General &gt; API; a shorter context in Settings &gt; Model needs less), plus about 0.4 GB for the program.</source>
        <translation>权重：原格式 {0}，8 位 {1}，4 位 {2}（cpu 后端）；另需 {3} 用于同时进行的 {5} 个 {4} 词元的对话（“设置 &gt; 常规 &gt; API”；在“设置 &gt; 模型”中缩短上下文可减少），程序本身约 0.4 GB。</translation>
    </message>
    <message>
        <source>Weights {0} as stored, {1} in 8 bits or {2} in 4 bits (the cpu backend), plus {3} for a conversation of {4} tokens (a shorter context in Settings &gt; Model needs less), plus about 0.4 GB for the program.</source>
        <translation>权重：原格式 {0}，8 位 {1}，4 位 {2}（cpu 后端）；另需 {3} 用于 {4} 个词元的对话（在“设置 &gt; 模型”中缩短上下文可减少），程序本身约 0.4 GB。</translation>
    </message>
    <message>
        <source>chat</source>
        <translation>对话</translation>
    </message>
    <message>
        <source>{0} of {1}</source>
        <translation>{0} / {1}</translation>
    </message>
    <message>
        <source>The models folder {0} cannot be used: {1}</source>
        <translation>无法使用模型文件夹 {0}：{1}</translation>
    </message>
    <message>
        <source>Download a model that will not fit?</source>
        <translation>下载一个装不下的模型？</translation>
    </message>
    <message>
        <source>{0} is the model in use: choose another one first.</source>
        <translation>{0} 正在使用中：请先选择其他模型。</translation>
    </message>
    <message>
        <source>Remove {0} from this list? Its files stay where they are ({1}).</source>
        <translation>从列表中移除 {0}？它的文件保留在原处（{1}）。</translation>
    </message>
    <message>
        <source>Delete {0} ({1}) from {2}? Downloading it again takes a long time.</source>
        <translation>从 {2} 删除 {0}（{1}）？重新下载需要很长时间。</translation>
    </message>
    <message>
        <source>Remove model</source>
        <translation>删除模型</translation>
    </message>
    <message>
        <source>base: continues text</source>
        <translation>基础：只续写文本</translation>
    </message>
    <message>
        <source>A chat model: tuned to answer questions in turns.</source>
        <translation>对话模型：经过调优，能一问一答地回答问题。</translation>
    </message>
    <message>
        <source>A base model: it continues the text it is given; it is not a chat assistant. The app chats with it through a plain User:/Assistant: transcript, and answers are weaker than a chat model&apos;s.</source>
        <translation>基础模型：它只会续写给它的文本，不是对话助手。应用通过简单的 User:/Assistant: 对话记录与它聊天，回答不如对话模型。</translation>
    </message>
    <message>
        <source>Whether this is a chat or a base model is not stated.</source>
        <translation>没有注明这是对话模型还是基础模型。</translation>
    </message>
    <message>
        <source>SmolLM2-135M-Instruct (built-in)</source>
        <translation>SmolLM2-135M-Instruct（内置）</translation>
    </message>
    <message>
        <source>{0} needs {1} more on the disk and only {2} is free there. Free some space or choose another models folder (e.g. another drive).</source>
        <translation>{0} 还需要 {1} 的磁盘空间，而那里只剩 {2}。请腾出空间，或选择另一个模型文件夹（例如另一个磁盘）。</translation>
    </message>
    <message>
        <source>{0} needs about {1} of memory even with 4-bit weights, and this PC has {2}: it would not load here. Download it anyway ({3})?</source>
        <translation>即使使用 4 位权重，{0} 也需要约 {1} 内存，而这台电脑只有 {2}：它无法在这里加载。仍要下载（{3}）吗？</translation>
    </message>
    <message>
        <source>As stored it needs {0} of memory and this PC has {1}: it will run with 4-bit weights ({2}; the cpu backend).</source>
        <translation>按原格式需要 {0} 内存，而这台电脑有 {1}：它将以 4 位权重运行（{2}；cpu 后端）。</translation>
    </message>
    <message>
        <source>As stored it needs {0} of memory and this PC has {1}: it will run with 8-bit weights ({2}).</source>
        <translation>按原格式需要 {0} 内存，而这台电脑有 {1}：它将以 8 位权重运行（{2}）。</translation>
    </message>
</context>
<context>
    <name>NoticeBar</name>
    <message>
        <source>Hide this message</source>
        <translation>隐藏此消息</translation>
    </message>
</context>
<context>
    <name>PathField</name>
    <message>
        <source>Browse…</source>
        <translation>浏览…</translation>
    </message>
</context>
<context>
    <name>SettingsDialog</name>
    <message>
        <source>Settings</source>
        <translation>设置</translation>
    </message>
    <message>
        <source>General</source>
        <translation>常规</translation>
    </message>
    <message>
        <source>Model</source>
        <translation>模型</translation>
    </message>
    <message>
        <source>Answers</source>
        <translation>回答</translation>
    </message>
    <message>
        <source>System language</source>
        <translation>跟随系统语言</translation>
    </message>
    <message>
        <source>Follow the system</source>
        <translation>跟随系统</translation>
    </message>
    <message>
        <source>Light</source>
        <translation>浅色</translation>
    </message>
    <message>
        <source>Dark</source>
        <translation>深色</translation>
    </message>
    <message>
        <source>Empty: the model&apos;s own default</source>
        <translation>留空：使用模型自带的默认值</translation>
    </message>
    <message>
        <source>Local API server (OpenAI-style, this computer only)</source>
        <translation>本地 API 服务（OpenAI 风格，仅限本机）</translation>
    </message>
    <message>
        <source>Answers computed at once while the server is on (this app&apos;s chat among them): together they cost little more time than one, but each needs memory for a whole conversation. Applies when a model is loaded next.</source>
        <translation>服务开启时同时计算的回答数（包括本应用自己的对话）：一起计算几乎不比一个慢，但每个都需要一整段对话的内存。下次加载模型时生效。</translation>
    </message>
    <message>
        <source>Port</source>
        <translation>端口</translation>
    </message>
    <message>
        <source>Answers at once</source>
        <translation>同时回答数</translation>
    </message>
    <message>
        <source>The local API server is not part of this version yet.</source>
        <translation>此版本尚未包含本地 API 服务。</translation>
    </message>
    <message>
        <source>Not available in this version.</source>
        <translation>此版本不可用。</translation>
    </message>
    <message>
        <source>Will listen on http://127.0.0.1:{0}</source>
        <translation>将监听 http://127.0.0.1:{0}</translation>
    </message>
    <message>
        <source>Language</source>
        <translation>语言</translation>
    </message>
    <message>
        <source>Theme</source>
        <translation>主题</translation>
    </message>
    <message>
        <source>Default system prompt</source>
        <translation>默认系统提示词</translation>
    </message>
    <message>
        <source>API</source>
        <translation>API</translation>
    </message>
    <message>
        <source>Saved conversations</source>
        <translation>已保存的对话状态</translation>
    </message>
    <message>
        <source>Quantized weights</source>
        <translation>量化权重</translation>
    </message>
    <message>
        <source>A reopened conversation continues at once instead of reading the whole chat again; the least recently used are deleted beyond this size</source>
        <translation>重新打开的对话可立即继续，无需重新读取整个对话；超出此大小时，最久未使用的会被删除</translation>
    </message>
    <message>
        <source>8-bit and 4-bit weights made when a model was loaded, kept so that its next load takes seconds instead of minutes; the least recently loaded are deleted beyond this size</source>
        <translation>加载模型时生成的 8 位和 4 位权重，保存下来后，下次加载只需几秒而不是几分钟；超出此大小时，最久未加载的会被删除</translation>
    </message>
    <message>
        <source>New conversations start with these settings; each conversation can change them (Conversation settings).</source>
        <translation>新对话使用这些设置；每个对话都可以单独修改（对话设置）。</translation>
    </message>
</context>
<context>
    <name>StatusBar</name>
    <message>
        <source>No model loaded</source>
        <translation>未加载模型</translation>
    </message>
    <message>
        <source>Saved conversation states: a conversation&apos;s state is read back instead of the whole conversation being read again</source>
        <translation>已保存的对话状态：读回对话状态，而不必把整段对话重新读一遍</translation>
    </message>
    <message>
        <source>Cancel</source>
        <translation>取消</translation>
    </message>
    <message>
        <source>Show the download in the Models window</source>
        <translation>在“模型”窗口中查看下载</translation>
    </message>
    <message>
        <source>RAM {0}</source>
        <translation>内存 {0}</translation>
    </message>
    <message>
        <source>{0} on {1} · {2}</source>
        <translation>{0}，运行于 {1} · {2}</translation>
    </message>
    <message>
        <source>Saved states {0}</source>
        <translation>已存状态 {0}</translation>
    </message>
    <message>
        <source>{0}: download paused ({1})</source>
        <translation>{0}：下载已暂停（{1}）</translation>
    </message>
    <message>
        <source>Downloading {0}: {1} · {2}/s</source>
        <translation>正在下载 {0}：{1} · {2}/秒</translation>
    </message>
    <message>
        <source>{0} is downloaded: choose it in the model list.</source>
        <translation>{0} 已下载完成：可在模型列表中选择它。</translation>
    </message>
    <message>
        <source>The download of {0} stopped: {1}</source>
        <translation>{0} 的下载已停止：{1}</translation>
    </message>
    <message>
        <source>Context {0} / {1}</source>
        <translation>上下文 {0} / {1}</translation>
    </message>
    <message>
        <source>Loading the model…</source>
        <translation>正在加载模型…</translation>
    </message>
</context>
</TS>
