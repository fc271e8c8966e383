package org.xlnetedge.app

import android.app.Activity
import android.os.Build
import android.os.Bundle
import android.os.SystemClock
import android.widget.TextView
import org.xlnetedge.tokenizer.XLNetTokenizer

/**
 * Minimal demo: tokenizes one sentence exactly like the host and prints the label and scores from the bundle's
 * default .tflite (LiteRT with XNNPACK on the CPU, the default; override with
 * `adb shell am start -n org.xlnetedge.app/.MainActivity --es backend CPU`, or NNAPI for the legacy path on devices
 * that still use it, API 27-34) and from its default .pte (ExecuTorch, XNNPACK) when one is bundled.
 * `--es model NAME` picks another artifact. The text runs at the shortest length bucket that holds it (the model's
 * method/signature forward_<length>), which is what a short text's latency reflects.
 *
 * At startup each model first passes the bundle's self-test (SelfTest.kt: selftest.json's golden texts must
 * tokenize to the golden ids and give the expected logits within the tolerance shown); a model that fails it is
 * not used. A real app would run this off the main thread.
 */
class MainActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val lines = mutableListOf<String>()
        try {
            val spec = loadBundleSpec(this)
            val tokenizer = XLNetTokenizer.load(assetFile(this, "$BUNDLE_ASSETS/tokenizer.json"))
            val text = intent.getStringExtra("text") ?: "a gorgeous , witty , seductive movie ."
            val input = tokenizer.encodeBucketed(text)  // the shortest length bucket that holds the text
            lines += "\"$text\": ${input.attentionMask.sum()} tokens, run at length ${input.inputIds.size} " +
                "(buckets ${tokenizer.sequenceLengths})"
            val chosen = intent.getStringExtra("model")
            val artifacts = if (chosen != null) listOf(spec.artifact(chosen, "")) else
                listOf("tflite", "pte").mapNotNull { f -> spec.artifacts.firstOrNull { it.format == f && it.valid } }
            // Startup check: selftest.json (verified like a model) replayed through the tokenizer and each model.
            val selfTest = SelfTestSpec.parse(verifiedModelFile(this, selfTestRecord(spec)).readText())
            for (artifact in artifacts) {
                val model = verifiedModelFile(this, artifact)  // valid, inside the bundle, manifest's sha256
                artifact.requireLengths(tokenizer.sequenceLengths)  // one method per length bucket
                val classifier: Classifier = if (artifact.format == "tflite") {
                    val asked = intent.getStringExtra("backend")  // adb: --es backend CPU (or NNAPI, legacy)
                    val backend = chooseBackend(artifact, asked, Build.VERSION.SDK_INT) { lines += "note: $it" }
                    lines += "${artifact.name} on LiteRT/$backend"
                    LiteRtClassifier(model, artifact, spec.maskValue, backend, spec.labels.size)
                } else {
                    lines += "${artifact.name} on ExecuTorch/XNNPACK"
                    ExecuTorchClassifier(model, artifact, spec.maskValue)
                }
                classifier.use {
                    val check = runSelfTest(selfTest, tokenizer, listOf(artifact)) { _, inputs ->
                        inputs.map { input -> it.logits(input) }
                    }
                    lines += check.lines.map { line -> "  $line" }
                    if (!check.passed) {
                        lines += "  ${artifact.name} failed its self-test: not used (re-export or re-copy the bundle)"
                        return@use
                    }
                    it.logits(input)  // warm-up: delegates set themselves up on the first run of a method
                    val started = SystemClock.elapsedRealtimeNanos()
                    val logits = it.logits(input)
                    val ms = (SystemClock.elapsedRealtimeNanos() - started) / 1e6
                    val method = artifact.method(input.inputIds.size).name ?: "forward"
                    lines += "  ${describe(spec.labels, logits)}  ($method, %.2f ms)".format(ms)
                }
            }
        } catch (err: Exception) {
            lines += "error: ${err.message}"
        }
        setContentView(TextView(this).apply { text = lines.joinToString("\n") })
    }

    private fun describe(labels: List<String>, logits: FloatArray): String {
        val scores = softmax(logits)
        val best = scores.indices.maxByOrNull { scores[it] } ?: 0
        return labels[best] + "  " + labels.indices.joinToString(" ") { "${labels[it]}=%.4f".format(scores[it]) }
    }
}
