package queue

// component is the queue's value of obs.KeyComponent.
const component = "queue"
