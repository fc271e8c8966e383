package org.xlnetedge.app

import android.app.Activity
import android.os.Bundle
import android.widget.TextView
import org.xlnetedge.tokenizer.XLNetTokenizer

/**
 * Minimal demo: tokenizes one sentence exactly like the host and prints the label from the .tflite (NNAPI,
 * switchable to XNNPACK/CPU) and, when bundled, the .pte. A real app would run this off the main thread.
 */
class MainActivity : Activity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val tokenizer = XLNetTokenizer.load(assetFile(this, "tokenizer.json"))
        val labels = loadLabels(this)
        val input = tokenizer.encode("a gorgeous , witty , seductive movie .")
        val lines = mutableListOf("tokens: ${input.inputIds.count { it != 5 }} of ${tokenizer.sequenceLength}")
        val backend = Backend.valueOf(intent.getStringExtra("backend") ?: "NNAPI")  // adb: --es backend XNNPACK
        if (assets.list("")?.contains("model.tflite") == true) {
            LiteRtClassifier(assetFile(this, "model.tflite"), backend, labels.size).use {
                lines += "tflite/$backend: ${label(labels, it.logits(input))}"
            }
        }
        if (assets.list("")?.contains("model.pte") == true) {
            ExecuTorchClassifier(assetFile(this, "model.pte")).use {
                lines += "executorch: ${label(labels, it.logits(input))}"
            }
        }
        setContentView(TextView(this).apply { text = lines.joinToString("\n") })
    }

    private fun label(labels: List<String>, logits: FloatArray): String =
        labels[logits.indices.maxByOrNull { logits[it] } ?: 0]
}
