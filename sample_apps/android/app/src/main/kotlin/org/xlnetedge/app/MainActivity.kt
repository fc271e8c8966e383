package org.xlnetedge.app

import android.app.Activity
import android.os.Bundle
import android.os.SystemClock
import android.widget.TextView
import org.xlnetedge.tokenizer.XLNetTokenizer

/**
 * Minimal demo: tokenizes one sentence exactly like the host and prints the label and scores from the bundle's
 * default .tflite (on the backend its manifest names, e.g. NNAPI; override with
 * `adb shell am start -n org.xlnetedge.app/.MainActivity --es backend XNNPACK`, or CPU, NNAPI) and from its
 * default .pte when one is bundled. `--es model NAME` picks another artifact. A real app would run this off the
 * main thread.
 */
class MainActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val lines = mutableListOf<String>()
        try {
            val spec = loadBundleSpec(this)
            val tokenizer = XLNetTokenizer.load(assetFile(this, "$BUNDLE_ASSETS/tokenizer.json"))
            val text = intent.getStringExtra("text") ?: "a gorgeous , witty , seductive movie ."
            val input = tokenizer.encode(text)
            lines += "\"$text\": ${input.attentionMask.sum()} of ${tokenizer.sequenceLength} tokens"
            val chosen = intent.getStringExtra("model")
            val artifacts = if (chosen != null) listOf(spec.artifact(chosen, "")) else
                listOf("tflite", "pte").mapNotNull { f -> spec.artifacts.firstOrNull { it.format == f && it.valid } }
            for (artifact in artifacts) {
                val model = verifiedModelFile(this, artifact)  // valid, inside the bundle, manifest's sha256
                val classifier: Classifier = if (artifact.format == "tflite") {
                    val asked = intent.getStringExtra("backend")  // adb: --es backend XNNPACK
                    val backend = if (asked != null) Backend.valueOf(asked) else defaultBackend(artifact)
                    lines += "${artifact.name} on LiteRT/$backend"
                    LiteRtClassifier(model, artifact, spec.maskValue, backend, spec.labels.size)
                } else {
                    lines += "${artifact.name} on ExecuTorch/XNNPACK"
                    ExecuTorchClassifier(model, artifact, spec.maskValue)
                }
                classifier.use {
                    it.logits(input)  // warm-up: delegates set themselves up on the first run
                    val started = SystemClock.elapsedRealtimeNanos()
                    val logits = it.logits(input)
                    val ms = (SystemClock.elapsedRealtimeNanos() - started) / 1e6
                    lines += "  ${describe(spec.labels, logits)}  (%.2f ms)".format(ms)
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
